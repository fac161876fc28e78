"""Secrets for netns_pods_test.py, as a cluster holds them and the kubelet
mounts them:
  - the Secrets deploy/README.md tells the operator to create before
    applying: hc-redis-auth (a random password) and hc-api-keys (keys.json
    holding the SHA-256 of a random API key, hashed by the built
    `hcctl hash-key` with the key on stdin, as the README says);
  - the Secrets the manifests render, and cert-manager's
    (cert_manager_emulation.py);
  - Secret volumes in the kubelet's layout (its AtomicWriter): the files are
    in a timestamped directory, `..data` links to it and every visible name
    links through `..data`. An update writes a new directory and renames a
    new `..data` link over the old one, so a reader sees the old files or the
    new ones, never a mix, and a file's identity (inode) changes: what a
    binary that polls the file must notice. `items` (key -> path, mode) and
    `defaultMode` are honoured; a missing Secret, or a missing key of
    `items`, fails a required volume as the kubelet fails to mount it (the
    pod does not start)."""
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile

from cert_manager_emulation import CertificateError, issue_certificates

API_KEYS_SECRET = "hc-api-keys"
API_KEYS_TENANT = "netns"


class SecretError(Exception):
    pass


def hash_api_key(hcctl, key):
    """The key's hash for keys.json, from `hcctl hash-key` (key on stdin:
    not in any process's argv)."""
    out = subprocess.run([hcctl, "hash-key"], input=key + "\n", capture_output=True, text=True)
    digest = out.stdout.strip()
    if out.returncode != 0 or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise SecretError(f"{hcctl} hash-key failed ({out.returncode}): {out.stderr.strip() or digest}")
    return digest


def api_keys_json(hcctl, key):
    """keys.json as an operator writes it: one key of one tenant, every salt."""
    entry = {"sha256": hash_api_key(hcctl, key), "tenant": API_KEYS_TENANT, "salt_prefix": ""}
    return json.dumps({"keys": [entry]}) + "\n"


def cluster_secrets(by_kind, hcctl):
    """(Secret name -> {key: text}, the API key of hc-api-keys): the
    operator's Secrets, the rendered ones, then cert-manager's."""
    api_key = secrets.token_hex(32)
    out = {"hc-redis-auth": {"password": secrets.token_hex(16)},
           API_KEYS_SECRET: {"keys.json": api_keys_json(hcctl, api_key)}}
    for s in by_kind.get("Secret", {}).values():
        data = {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}
        data.update(s.get("stringData", {}))
        out[s["metadata"]["name"]] = data
    certs = by_kind.get("Certificate", {})
    if certs:
        try:
            issue_certificates(certs, by_kind.get("Issuer", {}), out)
        except CertificateError as e:
            raise SecretError(str(e)) from None
    return out, api_key


def write_secret_volume(path, all_secrets, volume, where):
    """Creates or updates the Secret volume at `path` (the volume's `secret`
    spec, the Secrets by name), as the kubelet does."""
    name, optional = volume["secretName"], volume.get("optional", False)
    data = all_secrets.get(name)
    if data is None and not optional:
        raise SecretError(f"{where}: Secret {name} does not exist (the kubelet cannot mount it; the pod does "
                          f"not start). Neither rendered nor one the README says to create")
    data = data or {}
    mode = volume.get("defaultMode", 0o644)
    files = {}  # path in the volume -> (text, mode)
    for item in volume.get("items") or [{"key": k, "path": k} for k in data]:
        if item["key"] not in data:
            if optional:
                continue
            raise SecretError(f"{where}: Secret {name} has no key {item['key']} (the kubelet cannot mount it; "
                              f"the pod does not start)")
        files[item["path"]] = (data[item["key"]], item.get("mode", mode))
    os.makedirs(path, exist_ok=True)
    stamp = tempfile.mkdtemp(prefix="..stamp_", dir=path)
    os.chmod(stamp, 0o755)
    for rel, (text, file_mode) in files.items():
        full = os.path.join(stamp, rel)
        os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
        os.chmod(full, file_mode)
    link = os.path.join(path, "..data")
    old = os.readlink(link) if os.path.islink(link) else None
    os.symlink(os.path.basename(stamp), link + "_tmp")
    os.rename(link + "_tmp", link)  # the atomic switch
    visible = {rel.split("/")[0] for rel in files}
    for top in visible:
        if not os.path.islink(os.path.join(path, top)):
            os.symlink(f"..data/{top}", os.path.join(path, top))
    for entry in os.listdir(path):
        if not entry.startswith("..") and entry not in visible:
            os.unlink(os.path.join(path, entry))
    if old is not None:
        shutil.rmtree(os.path.join(path, old))
