"""ECR and EventBridge answers that moto gets wrong, made as AWS gives them.

- ECR DescribeImages: moto answers every image of the repository whatever the filter; ECR
  answers only tagged (``filter.tagStatus`` ``TAGGED``) or only untagged (``UNTAGGED``) images
  when asked, which is how Conveyor lists a repository's tags.
- EventBridge ListRules and ListTargetsByRule: moto sends ``"NextToken": null`` on the last page
  and a ``CreatedBy`` in each listed rule; AWS leaves an absent token out, and ``CreatedBy`` is
  not a member of a listed rule in botocore's model (only DescribeRule answers it).
"""

from __future__ import annotations

import json
from typing import Any

_installed: list[str] = []


def install() -> None:
    """Patch moto's ECR and EventBridge handlers (process-wide; idempotent)."""
    if _installed:
        return
    from moto.ecr.responses import ECRResponse
    from moto.events.responses import EventsHandler

    describe_images = ECRResponse.describe_images

    def filtered_describe_images(self: Any) -> Any:
        result: Any = describe_images(self)
        status = (self._get_param("filter") or {}).get("tagStatus") or "ANY"
        if status != "ANY":
            wanted = status == "TAGGED"
            result.result["imageDetails"] = [
                image
                for image in result.result["imageDetails"]
                if bool(getattr(image, "image_tags", None)) == wanted
            ]
        return result

    ECRResponse.describe_images = filtered_describe_images  # type: ignore[method-assign]
    for name, listed in (("list_rules", "Rules"), ("list_targets_by_rule", None)):
        setattr(EventsHandler, name, _as_aws_lists(getattr(EventsHandler, name), listed))
    _installed.append("installed")


def _as_aws_lists(handler: Any, rules: str | None) -> Any:
    def patched(self: Any) -> Any:
        answer = handler(self)
        if not isinstance(answer, tuple) or not isinstance(answer[0], str):
            return answer
        body, headers = answer[0], answer[1:]
        data = json.loads(body)
        if data.get("NextToken") is None:
            data.pop("NextToken", None)
        for rule in data.get(rules, []) if rules else []:
            rule.pop("CreatedBy", None)
        return (json.dumps(data), *headers)

    return patched
