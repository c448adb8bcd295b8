"""Prometheus behind TLS with a private CA, basic auth and a bearer-token gateway.

A real Prometheus serves HTTPS with a certificate signed by a CA made for the test
(``--web.config.file``: ``tls_server_config`` and bcrypt-hashed ``basic_auth_users``)
and scrapes the simulator. In front of it, an HTTPS gateway with its own certificate
from the same CA accepts one bearer token and forwards queries with the basic-auth
credentials, as an auth proxy before a shared Prometheus does. healer reads Frames
through both, with settings as an operator writes them, and reports a certificate it
cannot trust, a wrong password and a wrong token as errors naming the signal.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import numpy as np
import pytest
import uvicorn
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_prometheus import _binary

from healer.api.server import ServerThread, bind
from healer.collect.prometheus import PrometheusSource
from healer.config import PrometheusSettings
from healer.errors import PrometheusUnavailable
from healer.sim.apiserver import create_api
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario
from healer.types import Signal

pytestmark = pytest.mark.integration

USER, PASSWORD, TOKEN = "healer", "correct horse", "gateway-token-1"


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(directory: Path) -> Pki:
    """A CA, and a certificate it signs for 127.0.0.1 and localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("healer test CA"))
        .issuer_name(_name("healer test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("prometheus"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


class TlsServerThread(ServerThread):
    """ServerThread over HTTPS: the gateway."""

    def __init__(self, app: Any, pki: Pki) -> None:
        super().__init__(app, bind("127.0.0.1", 0))
        self.url = self.url.replace("http://", "https://")
        config = uvicorn.Config(
            app,
            log_level="error",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(pki.cert),
            ssl_keyfile=str(pki.key),
        )
        self.server = uvicorn.Server(config)


def gateway(upstream: str, pki: Pki) -> Starlette:
    """Accepts ``Bearer TOKEN``; forwards the query API with the basic-auth credentials."""
    trust = ssl.create_default_context(cafile=pki.ca)

    async def forward(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return Response("Unauthorized", status_code=401)
        # A client per request: nothing is left open when the gateway stops.
        async with httpx.AsyncClient(verify=trust, auth=(USER, PASSWORD), timeout=30) as client:
            answer = await client.get(
                f"{upstream}{request.url.path}", params=list(request.query_params.multi_items())
            )
        kept = {"content-type": answer.headers.get("content-type", "application/json")}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    return Starlette(routes=[Route("/api/v1/{path:path}", forward, methods=["GET", "POST"])])


@dataclass
class Secured:
    prometheus: str
    gateway: str
    pki: Pki
    cluster: Cluster


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    prometheus = _binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus-tls")
    pki = make_pki(workdir)
    cluster = Cluster(load_scenario("default"))
    sim = ServerThread(create_api(cluster), bind("127.0.0.1", 0)).start()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = workdir / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(pki.cert), "key_file": str(pki.key)},
                "basic_auth_users": {USER: hashed},
            }
        )
    )
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "sim",
                        "static_configs": [{"targets": [sim.url.removeprefix("http://")]}],
                    }
                ],
            }
        )
    )
    port = bind("127.0.0.1", 0)
    address = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--web.config.file={web}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"https://{address}"
    front = TlsServerThread(gateway(url, pki), pki)
    try:
        front.start()
        _wait_for_scrapes(url, pki, process, log)
        yield Secured(url, front.url, pki, cluster)
    finally:
        front.stop()
        process.terminate()
        process.wait(timeout=10)
        sim.stop()


def _wait_for_scrapes(url: str, pki: Pki, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until Prometheus, asked over TLS with the password, holds a few scrapes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            answer = httpx.get(
                f"{url}/api/v1/query",
                params={"query": "count_over_time(up[1m])"},
                auth=(USER, PASSWORD),
                verify=ssl.create_default_context(cafile=pki.ca),
                timeout=2.0,
            )
            result = answer.json()["data"]["result"] if answer.status_code == 200 else []
            if result and float(result[0]["value"][1]) >= 5:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("prometheus did not scrape the simulator over 60 s")


def _source(**settings: Any) -> PrometheusSource:
    given = {"step_s": 1, "rate_window_s": 2, "retries": 2, "backoff_s": 0.0, **settings}
    return PrometheusSource.from_settings(PrometheusSettings(**given))


def _fetch(source: PrometheusSource) -> Any:
    return source.fetch(until=dt.datetime.now(dt.UTC), window_s=4)


def _check(frame: Any, cluster: Cluster) -> None:
    assert set(frame.workloads) == set(cluster.workloads)
    memory = frame.values[:, frame.signals.index(Signal.MEMORY), :]
    assert not np.isnan(memory).all()


def test_basic_auth_over_tls_with_a_private_ca(secured: Secured) -> None:
    source = _source(
        url=secured.prometheus,
        basic_auth_username=USER,
        basic_auth_password=SecretStr(PASSWORD),
        ca_file=secured.pki.ca,
    )
    _check(_fetch(source), secured.cluster)


def test_bearer_token_file_through_a_gateway(secured: Secured, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")  # as a mounted service-account token may end
    source = _source(url=secured.gateway, bearer_token_file=token, ca_file=secured.pki.ca)
    _check(_fetch(source), secured.cluster)


def test_an_untrusted_certificate_names_the_fix_and_is_not_retried(secured: Secured) -> None:
    source = _source(
        url=secured.prometheus, basic_auth_username=USER, basic_auth_password=SecretStr(PASSWORD)
    )
    sleeps: list[float] = []
    source._sleep = sleeps.append  # no waiting between attempts, and a record of them
    with pytest.raises(PrometheusUnavailable) as caught:
        _fetch(source)
    message = str(caught.value)
    assert message.startswith("signal ")
    assert f"the certificate of Prometheus at {secured.prometheus} is not trusted" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message and "prometheus.ca_file" in message
    assert sleeps == []


@pytest.mark.parametrize(
    ("where", "credentials"),
    [
        ("prometheus", {"basic_auth_username": USER, "basic_auth_password": SecretStr("wrong")}),
        ("gateway", {"bearer_token": SecretStr("not-the-token")}),
    ],
)
def test_wrong_credentials_are_401_and_not_retried(
    secured: Secured, where: str, credentials: dict[str, Any]
) -> None:
    url = secured.prometheus if where == "prometheus" else secured.gateway
    source = _source(url=url, ca_file=secured.pki.ca, **credentials)
    sleeps: list[float] = []
    source._sleep = sleeps.append
    with pytest.raises(
        PrometheusUnavailable, match=rf"^signal \w+: Prometheus at {url} answered HTTP 401"
    ):
        _fetch(source)
    assert sleeps == []
