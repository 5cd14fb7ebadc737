"""A local certificate authority and the embedded Kafka nodes' TLS certificate.

Generated with `cryptography` (no openssl or keytool): an EC P-256 CA that signs one node
certificate shared by every node of the embedded broker/cluster (subject ``CN=tormenta-node``,
which is also the nodes' principal on the mutual-TLS controller listener; SANs
``IP:127.0.0.1`` and ``DNS:localhost``, which is where every node listens). Kafka 4 reads
PEM directly (``ssl.keystore.type=PEM``, ``ssl.truststore.type=PEM``): the node's keystore
is one file holding its unencrypted PKCS#8 key, its certificate and the CA certificate.
Private keys are written mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NODE_CN = "tormenta-node"
CA_CN = "Tormenta local CA"
CA_DAYS = 3650
NODE_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=7)   # a node certificate this close to expiry is issued again


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only (0600), also when the file existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pkcs8_pem(key) -> bytes:
    """The key as unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``), the form Kafka's PEM keystore reads."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(days: int = CA_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_CN)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_node_cert(ca_key, ca_cert: x509.Certificate, cn: str = NODE_CN, days: int = NODE_DAYS,
                   ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server+client certificate for loopback nodes: SAN IP:127.0.0.1 and DNS:localhost."""
    key = _key()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_agreement=True,
                                         key_cert_sign=False, crl_sign=False, content_commitment=False,
                                         data_encipherment=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA and the node's keystore live (all in one folder)."""

    dir: Path

    ca = property(lambda self: self.dir / "ca.pem")              # CA certificate: every truststore
    ca_key = property(lambda self: self.dir / "ca-key.pem")      # CA key (0600), signs node certificates
    keystore = property(lambda self: self.dir / "node.pem")      # node key (PKCS#8) + node cert + CA cert (0600)

    def node_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.keystore.read_bytes())[0]

    def ensure(self) -> bool:
        """Create the CA and the node keystore if missing (or the node certificate near expiry); True if written."""
        wrote = False
        if not (self.ca.exists() and self.ca_key.exists()):
            ca_key, ca_cert = make_ca()
            write_private(self.ca_key, pkcs8_pem(ca_key))
            self.ca.write_bytes(cert_pem(ca_cert))
            self.keystore.unlink(missing_ok=True)   # signed by a CA that is gone
            wrote = True
        if not self.keystore.exists() or self.node_cert().not_valid_after_utc - _now() < RENEW_BEFORE:
            ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(self.ca.read_bytes())
            key, cert = make_node_cert(ca_key, ca_cert)
            write_private(self.keystore, pkcs8_pem(key) + cert_pem(cert) + cert_pem(ca_cert))
            wrote = True
        return wrote
