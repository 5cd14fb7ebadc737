"""The local CA and the node certificate (pipeline.kafka.certs): names, SANs, validity, key format, file modes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.kafka import certs


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_a_self_signed_ca_valid_for_years():
    key, ca = certs.make_ca()
    assert ca.subject == ca.issuer
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == certs.CA_CN
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ca.verify_directly_issued_by(ca)
    now = dt.datetime.now(dt.UTC)
    assert ca.not_valid_before_utc <= now < ca.not_valid_after_utc
    assert ca.not_valid_after_utc - now > dt.timedelta(days=365 * 9)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_node_certificate_names_loopback_and_is_signed_by_the_ca():
    ca_key, ca = certs.make_ca()
    _, node = certs.make_node_cert(ca_key, ca)
    assert node.subject.rfc4514_string() == f"CN={certs.NODE_CN}"   # the principal User:CN=tormenta-node
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert node.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usages = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    node.verify_directly_issued_by(ca)
    now = dt.datetime.now(dt.UTC)
    assert node.not_valid_before_utc <= now
    assert dt.timedelta(days=certs.NODE_DAYS - 1) < node.not_valid_after_utc - now <= dt.timedelta(days=certs.NODE_DAYS)


def test_key_is_unencrypted_pkcs8_pem():
    key, _ = certs.make_ca()
    pem = certs.pkcs8_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")      # PKCS#8, not "BEGIN EC PRIVATE KEY"
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert loaded.private_numbers() == key.private_numbers()


def test_files_keystore_holds_key_cert_and_ca_private_modes(tmp_path):
    files = certs.TlsFiles(tmp_path / "secure")
    assert files.ensure() is True
    blocks = files.keystore.read_bytes().decode().split("-----END ")
    assert blocks[0].startswith("-----BEGIN PRIVATE KEY-----")
    chain = x509.load_pem_x509_certificates(files.keystore.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    assert len(chain) == 2 and chain[1] == ca
    chain[0].verify_directly_issued_by(ca)
    assert _mode(files.keystore) == 0o600 and _mode(files.ca_key) == 0o600
    assert b"PRIVATE KEY" not in files.ca.read_bytes()


def test_ensure_keeps_what_exists_and_renews_a_node_cert_near_expiry(tmp_path, monkeypatch):
    files = certs.TlsFiles(tmp_path)
    files.ensure()
    ca_before, node_before = files.ca.read_bytes(), files.keystore.read_bytes()
    assert files.ensure() is False
    assert files.keystore.read_bytes() == node_before
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    key, short = certs.make_node_cert(ca_key, ca, days=3)     # inside RENEW_BEFORE
    certs.write_private(files.keystore, certs.pkcs8_pem(key) + certs.cert_pem(short) + certs.cert_pem(ca))
    assert files.ensure() is True
    assert files.ca.read_bytes() == ca_before                  # same CA: clients' trust stays valid
    assert files.node_cert().not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)


def test_write_private_tightens_an_existing_file(tmp_path):
    path = tmp_path / "k.pem"
    path.write_text("old")
    path.chmod(0o644)
    certs.write_private(path, b"new")
    assert path.read_bytes() == b"new" and _mode(path) == 0o600
