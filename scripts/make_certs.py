"""A private CA and hub certificates for trying TLS and mutual TLS (docker/compose.yaml, the TLS tests).

    python scripts/make_certs.py docker/certs cert-de cert-fr   # ca.pem + cert-de.pem/-key.pem + cert-fr...

Each hub certificate is valid for its name, localhost and 127.0.0.1, for both server and client use, so one
file serves the hub's HTTPS listener and its client certificate towards peers that require one. For
production, use certificates from your organization's PKI; this is for test federations. Needs the
`cryptography` package (in the dev extras).
"""

import argparse
import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825  # the longest validity clients still accept for a TLS server certificate


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "exchange test federation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    issued = Issued(cert=directory / f"{stem}.pem", key=directory / f"{stem}-key.pem")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issued.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    issued.key.chmod(0o600)
    return issued


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def make_ca(directory: Path, common_name: str = "exchange test CA", stem: str = "ca") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(common_name), _name(common_name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return _write(directory, stem, cert, key)


def make_leaf(directory: Path, ca: Issued, name: str, *, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Issued:
    """A certificate for `name` (and `hosts`) signed by `ca`, usable as a TLS server and client certificate."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for host in dict.fromkeys((name, *hosts)):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    cert = (_builder(_name(name), ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _write(directory, name, cert, key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("names", nargs="+", metavar="NAME", help="host name of each hub (also its file name)")
    args = parser.parse_args(argv)
    ca_file = args.directory / "ca.pem"
    ca = Issued(ca_file, args.directory / "ca-key.pem") if ca_file.exists() else make_ca(args.directory)
    for name in args.names:
        issued = make_leaf(args.directory, ca, name)
        print(f"{issued.cert} (key {issued.key}), signed by {ca.cert}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
