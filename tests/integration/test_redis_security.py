"""Redis with a password and TLS: deployments run, and the password is never printed."""

from __future__ import annotations

import datetime
import ipaddress
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from localaws.devstack import RedisTls, Worker, run_redis
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_tls(directory: Path) -> RedisTls:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conveyor test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = RedisTls(
        cert=directory / "server.crt", key=directory / "server.key", ca=directory / "ca.crt"
    )
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(_pem(key))
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def test_password_and_tls(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Over rediss:// with AUTH a deployment succeeds; the password appears in no output."""
    password = f"pw-{uuid.uuid4().hex}"
    tls = make_tls(tmp_path)
    with run_redis(password=password, tls=tls) as url:
        assert url.startswith("rediss://")
        stack.env.update(CONVEYOR_REDIS_URL=url, CONVEYOR_REDIS_CA_FILE=str(tls.ca))
        stack.redis_url = url
        worker = start_worker("tls")
        result = stack.cli(
            "update", "--cluster", "demo", "--service", "web", "--image", "web=:1.1.0", "--json"
        )
        assert result.returncode == 0, result.stderr + result.stdout
        assert json.loads(result.stdout)["state"] == "succeeded"
        for where, text in (("worker log", worker.log()), ("cli", result.stdout + result.stderr)):
            assert password not in text, f"the Redis password leaked into the {where}"

        # A CA that did not sign the server's certificate: the CLI must refuse to talk to it.
        other = tmp_path / "other"
        other.mkdir()
        stack.env["CONVEYOR_REDIS_CA_FILE"] = str(make_tls(other).ca)
        # The default 90 s of retries is test_failover's subject; the refusal is the same after 2 s.
        stack.env["CONVEYOR_REDIS_RETRY_SECONDS"] = "2"
        refused = stack.cli(
            "update", "--cluster", "demo", "--service", "web", "--image", "web=:1.1.0"
        )
        assert refused.returncode == 3, refused.stderr
        assert password not in refused.stderr
