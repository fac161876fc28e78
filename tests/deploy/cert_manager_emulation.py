"""cert-manager, emulated for netns_pods_test.py: what cert-manager would
write into the Secret of every Certificate (tls.crt, tls.key, ca.crt), made
with openssl and signed as the Certificate's Issuer says (selfSigned, or ca:
the Secret of another Certificate). P-256 keys, valid for two days."""
import os
import secrets
import shutil
import subprocess
import tempfile

_EKU = {"server auth": "serverAuth", "client auth": "clientAuth"}


class CertificateError(Exception):
    pass


def _run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise CertificateError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")


def issue_certificate(work, name, spec, signer):
    """The Secret data of Certificate `name` (its spec), signed by `signer`
    (the CA Secret's data), or self-signed when it is None."""
    path = lambda ext: os.path.join(work, f"{name}.{ext}")  # noqa: E731
    ext = []
    if spec.get("isCA"):
        ext += ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
    else:
        ext.append("basicConstraints=CA:FALSE")
        san = [f"DNS:{n}" for n in spec.get("dnsNames", [])] + [f"IP:{a}" for a in spec.get("ipAddresses", [])]
        if san:
            ext.append("subjectAltName=" + ",".join(san))
        eku = [_EKU[u] for u in spec.get("usages", ["server auth", "client auth"]) if u in _EKU]
        if eku:
            ext.append("extendedKeyUsage=" + ",".join(eku))
    with open(path("ext"), "w") as f:
        f.write("\n".join(ext) + "\n")
    _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path("key")])
    _run(["openssl", "req", "-new", "-key", path("key"), "-subj", f"/CN={spec.get('commonName', name)}",
          "-out", path("csr")])
    sign = ["openssl", "x509", "-req", "-in", path("csr"), "-days", "2", "-extfile", path("ext"),
            "-set_serial", f"0x{secrets.token_hex(12)}", "-out", path("crt")]
    if signer is None:
        _run(sign + ["-signkey", path("key")])
    else:
        for key in ("tls.crt", "tls.key"):
            with open(path(f"signer.{key}"), "w") as f:
                f.write(signer[key])
        _run(sign + ["-CA", path("signer.tls.crt"), "-CAkey", path("signer.tls.key")])
    data = {}
    for key, ext_name in (("tls.crt", "crt"), ("tls.key", "key")):
        with open(path(ext_name)) as f:
            data[key] = f.read()
    data["ca.crt"] = signer["tls.crt"] if signer is not None else data["tls.crt"]
    return data


def issue_certificates(certificates, issuers, secret_data):
    """Adds the Secret of every Certificate (name -> object) to secret_data
    (Secret name -> {key: text}), CAs before what they sign."""
    pending = dict(certificates)
    work = tempfile.mkdtemp(prefix="hc-netns-certs-")
    try:
        while pending:
            progressed = False
            for name, cert in list(pending.items()):
                spec = cert["spec"]
                issuer = issuers.get(spec["issuerRef"]["name"])
                if issuer is None:
                    raise CertificateError(f"Certificate {name}: Issuer {spec['issuerRef']['name']} is not rendered")
                if "selfSigned" in issuer["spec"]:
                    signer = None
                elif "ca" in issuer["spec"]:
                    signer = secret_data.get(issuer["spec"]["ca"]["secretName"])
                    if signer is None:
                        continue  # its CA's Certificate first
                else:
                    raise CertificateError(f"Issuer {issuer['metadata']['name']}: only selfSigned and ca are emulated")
                secret_data[spec["secretName"]] = issue_certificate(work, name, spec, signer)
                del pending[name]
                progressed = True
            if not progressed:
                raise CertificateError(f"Certificates whose CA never exists: {sorted(pending)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
