"""TLS for the stack's load balancer: the spec's ACM certificate, or a generated private CA.

Without ``network.domain`` + ``network.certificate_arn``, the engine calls
:func:`generated_config` once per stack: a private CA (name-constrained to AWS load balancer
host names, its key discarded after signing) and a server certificate for the region's
load balancer names. The program imports that certificate into ACM and exports the CA's PEM
in the outputs, so mlstack's clients trust exactly that CA and nothing else.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pulumi

from stacks.spec import AwsStackSpec as StackSpec

CA_CONFIG = "tlsCaCert"  # plain config: the CA's certificate (public)
CERT_CONFIG = "tlsCert"  # plain config: the server certificate (public)
KEY_CONFIG = "tlsKey"  # secret config: the server's private key
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 and 1.3 only
VALID_DAYS = 730


def lb_hostnames(region: str) -> list[str]:
    """Wildcards covering the load balancer's DNS name (``NAME-ID.REGION.elb.amazonaws.com``)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return [f"*.{region}.elb.{suffix}", f"*.elb.{region}.{suffix}"]


@dataclass(frozen=True)
class Material:
    """PEM texts of one generated CA and the server certificate it signed."""

    ca_pem: str
    cert_pem: str
    key_pem: str


def generate(hostnames: list[str], common_name: str) -> Material:
    """A fresh CA and a server certificate for ``hostnames``; the CA key is not kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=VALID_DAYS)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} private CA")])
    # The CA can only ever vouch for the names the stack uses, even if it leaked.
    permitted: list[x509.GeneralName] = [
        x509.DNSName(name.removeprefix("*.")) for name in hostnames
    ]
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.NameConstraints(permitted, None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in hostnames]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Material(
        ca_pem=ca.public_bytes(pem).decode(),
        cert_pem=cert.public_bytes(pem).decode(),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


def generated_config(spec: StackSpec) -> dict[str, tuple[str, bool]]:
    """Config the engine sets once per stack: ``{key: (value, secret)}``; empty with a domain."""
    if spec.network.certificate_arn:
        return {}
    material = generate(lb_hostnames(spec.region or "us-east-1"), f"mlstack {spec.name}")
    return {
        CA_CONFIG: (material.ca_pem, False),
        CERT_CONFIG: (material.cert_pem, False),
        KEY_CONFIG: (material.key_pem, True),
    }


@dataclass(frozen=True)
class Tls:
    """What the listeners and the outputs need: certificate ARN, host, CA (None: public)."""

    certificate_arn: pulumi.Input[str]
    ca_pem: str | None

    @staticmethod
    def create(spec: StackSpec, parent: pulumi.Resource, name: str) -> Tls:
        """The spec's certificate, or the generated one imported into ACM."""
        import pulumi_aws as aws

        if spec.network.certificate_arn:
            return Tls(certificate_arn=spec.network.certificate_arn, ca_pem=None)
        config = pulumi.Config("mlstack")
        ca_pem = config.require(CA_CONFIG)
        cert = aws.acm.Certificate(
            "tls-certificate",
            private_key=config.require_secret(KEY_CONFIG),
            certificate_body=config.require(CERT_CONFIG),
            certificate_chain=ca_pem,
            tags={"Name": name},
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return Tls(certificate_arn=cert.arn, ca_pem=ca_pem)
