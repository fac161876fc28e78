"""The security part of check_k8s.py: cert-manager objects (structural
schemas), NetworkPolicies (worker gRPC from router pods only, /metrics from
the monitoring namespace only), the TLS wiring of the router and worker
flags, and the router's API keys file. SecurityChecks is a mixin of check_k8s.Overlay: it uses its rendered
objects (by_kind, get, workload_with_image), err(), and the flags
check_router/check_worker parsed (router_flags, worker_flags)."""

CERT_MANAGER_KINDS = ("Certificate", "Issuer")
# Certificate file flags -> the key of a cert-manager Secret they must read.
TLS_FILE_FLAGS = {"tls_cert": "tls.crt", "tls_key": "tls.key", "tls_client_ca": "ca.crt",
                  "peer_ca": "ca.crt", "worker_ca": "ca.crt", "worker_tls_cert": "tls.crt",
                  "worker_tls_key": "tls.key"}
MONITORING_NAMESPACE_LABEL = "kubernetes.io/metadata.name"
# The key of the operator-made Secret that --api_keys_file reads
# (deploy/README.md: kubectl create secret generic hc-api-keys
# --from-file=keys.json=...).
API_KEYS_SECRET_KEY = "keys.json"


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


_STRLIST = {"type": "array", "items": {"type": "string"}}
_ISSUER_REF = {"type": "object", "required": ["name"], "additionalProperties": False,
               "properties": {"name": {"type": "string"}, "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                              "group": {"type": "string"}}}
# cert-manager.io/v1, the fields used here; strict, so that a misspelt field
# (which cert-manager would reject) fails here.
CERT_MANAGER_SCHEMAS = {
    "Issuer": {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
               "properties": {"selfSigned": {"type": "object"},
                              "ca": {"type": "object", "required": ["secretName"], "additionalProperties": False,
                                     "properties": {"secretName": {"type": "string"}}}}},
    "Certificate": {"type": "object", "required": ["secretName", "issuerRef"], "additionalProperties": False,
                    "properties": {
                        "secretName": {"type": "string"}, "issuerRef": _ISSUER_REF, "isCA": {"type": "boolean"},
                        "commonName": {"type": "string"}, "dnsNames": _STRLIST, "ipAddresses": _STRLIST,
                        "duration": {"type": "string", "pattern": r"^([0-9]+(h|m|s))+$"},
                        "renewBefore": {"type": "string", "pattern": r"^([0-9]+(h|m|s))+$"},
                        "usages": {"type": "array", "items": {"enum": [
                            "server auth", "client auth", "digital signature", "key encipherment",
                            "cert sign", "crl sign"]}},
                        "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": {"type": "integer"},
                            "rotationPolicy": {"enum": ["Never", "Always"]},
                            "encoding": {"enum": ["PKCS1", "PKCS8"]}}}}},
}


class SecurityChecks:
    # ---- network policies -----------------------------------------------
    def policy_rules(self, labels):
        """The ingress rules of every NetworkPolicy selecting pods with
        `labels`, or None when none selects them (all traffic admitted)."""
        rules, found = [], False
        for np in self.by_kind.get("NetworkPolicy", {}).values():
            if not labels_match(np["spec"].get("podSelector", {}).get("matchLabels", {}), labels):
                continue
            if "Ingress" not in np["spec"].get("policyTypes", ["Ingress"]):
                continue
            found = True
            rules.extend(np["spec"].get("ingress", []))
        return rules if found else None

    def check_port_sources(self, what, labels, port_names, allowed, allowed_text):
        """Every rule admitting a port of `port_names` (by name or number)
        must admit only peers for which allowed(peer) holds."""
        rules = self.policy_rules(labels)
        if rules is None:
            self.err(f"no NetworkPolicy selects the {what} pods: anyone who reaches them may connect")
            return
        for rule in rules:
            ports = rule.get("ports")
            if ports and not any(p.get("port") in port_names for p in ports):
                continue
            peers = rule.get("from")
            if not peers or not all(allowed(peer) for peer in peers):
                self.err(f"NetworkPolicy on the {what} pods admits port(s) {sorted(map(str, port_names))} "
                         f"from {peers or 'anywhere'}; only {allowed_text} may connect")

    def check_network_policies(self):
        router, rc = self.workload_with_image("hc-router")
        worker, wc = self.workload_with_image("hc-worker")
        if router is None or worker is None:
            return
        router_labels = router["spec"]["template"]["metadata"]["labels"]

        def ports_named(c, name):
            return {name} | {p["containerPort"] for p in c.get("ports", []) if p["name"] == name}

        def is_router(peer):
            return (set(peer) == {"podSelector"}
                    and labels_match(peer["podSelector"].get("matchLabels", {}), router_labels))

        def is_monitoring(peer):
            ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
            return "ipBlock" not in peer and MONITORING_NAMESPACE_LABEL in ns

        worker_labels = worker["spec"]["template"]["metadata"]["labels"]
        self.check_port_sources("worker", worker_labels, ports_named(wc, "grpc"), is_router, "router pods")
        for what, w, c in (("worker", worker, wc), ("router", router, rc)):
            self.check_port_sources(what, w["spec"]["template"]["metadata"]["labels"], ports_named(c, "metrics"),
                                    is_monitoring, "the monitoring namespace")

    # ---- TLS ----------------------------------------------------------------
    def secret_key_of(self, w, c, path):
        """(Certificate, key) whose Secret volume `path` reads, or None."""
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"].get("volumes", [])}
        for m in c.get("volumeMounts", []):
            mount = m["mountPath"].rstrip("/") + "/"
            if not path.startswith(mount):
                continue
            secret = volumes.get(m["name"], {}).get("secret", {}).get("secretName")
            certs = [cert for cert in self.by_kind.get("Certificate", {}).values()
                     if cert["spec"]["secretName"] == secret]
            return (certs[0] if certs else None), path[len(mount):]
        return None

    def check_tls(self):
        router, rc = self.workload_with_image("hc-router")
        worker, wc = self.workload_with_image("hc-worker")
        if router is None or worker is None:
            return
        rf, wf = getattr(self, "router_flags", {}), getattr(self, "worker_flags", {})
        certs = {}  # (binary, flag) -> Certificate
        for who, w, c, flags in (("router", router, rc, rf), ("worker", worker, wc, wf)):
            for flag, key in TLS_FILE_FLAGS.items():
                if flag not in flags:
                    continue
                found = self.secret_key_of(w, c, flags[flag])
                if found is None or found[0] is None:
                    self.err(f"{who} --{flag}={flags[flag]} is not in a mounted Secret of a cert-manager "
                             f"Certificate")
                    continue
                cert, got = found
                if got != key:
                    self.err(f"{who} --{flag} reads {got} of Secret {cert['spec']['secretName']}, expected {key}")
                certs[(who, flag)] = cert
        # Mutual TLS router -> worker: both sides or neither.
        if ("peer_ca" in wf) != ("worker_tls_cert" in rf):
            self.err("worker --peer_ca and router --worker_tls_cert go together: a worker that requires client "
                     "certificates refuses a router without one (and a router's certificate is pointless "
                     "without --peer_ca)")
        if ("tls_cert" in wf) != ("worker_ca" in rf):
            self.err("worker --tls_cert and router --worker_ca go together: one side would speak TLS, the "
                     "other plaintext")
        client, peer_ca = certs.get(("router", "worker_tls_cert")), certs.get(("worker", "peer_ca"))
        if client and peer_ca and client["spec"]["issuerRef"] != peer_ca["spec"]["issuerRef"]:
            self.err(f"the router's client certificate ({client['metadata']['name']}) and the workers' "
                     f"--peer_ca ({peer_ca['metadata']['name']}) come from different issuers: handshakes fail")
        if client and "client auth" not in client["spec"].get("usages", ["client auth"]):
            self.err(f"Certificate {client['metadata']['name']} (router -> workers) lacks usage 'client auth'")
        wcert = certs.get(("worker", "tls_cert"))
        if wcert:
            if "worker_server_name" not in rf:
                self.err("router dials workers by pod IP: set --worker_server_name to a name of the workers' "
                         "certificate")
            elif rf["worker_server_name"] not in wcert["spec"].get("dnsNames", []):
                self.err(f"router --worker_server_name={rf['worker_server_name']} is not among the dnsNames of "
                         f"Certificate {wcert['metadata']['name']}: {wcert['spec'].get('dnsNames', [])}")
        for cert in self.by_kind.get("Certificate", {}).values():
            ref = cert["spec"]["issuerRef"]
            if ref.get("kind", "Issuer") == "Issuer" and self.get("Issuer", ref["name"]) is None:
                self.err(f"Certificate {cert['metadata']['name']}: Issuer {ref['name']} is not rendered")

    # ---- API keys -------------------------------------------------------------
    def check_api_keys(self):
        """A router that serves clients over TLS (the production shape) must
        authenticate them; its keys file must come from a Secret volume the
        kubelet keeps current (the router reloads the file when it changes)
        and that the pod cannot start without."""
        router, rc = self.workload_with_image("hc-router")
        if router is None:
            return
        rf = getattr(self, "router_flags", {})
        path = rf.get("api_keys_file")
        if path is None:
            if "tls_cert" in rf:
                self.err("router serves TLS (--tls_cert) without --api_keys_file: every caller would be the "
                         "admin of the empty tenant")
            return
        volumes = {v["name"]: v for v in router["spec"]["template"]["spec"].get("volumes", [])}
        # The most specific mount holding the path, as the container sees it.
        mount = max((m for m in rc.get("volumeMounts", [])
                     if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")),
                    key=lambda m: len(m["mountPath"]), default=None)
        secret = volumes.get(mount["name"], {}).get("secret") if mount else None
        if secret is None:
            self.err(f"router --api_keys_file={path} is not in a mounted Secret volume (the router does not "
                     f"start without the file)")
            return
        name = secret["secretName"]
        if mount.get("subPath"):
            self.err(f"router --api_keys_file: Secret {name} is mounted with subPath, which the kubelet never "
                     f"updates: changed keys would need a restart")
            return
        if secret.get("optional", False):
            self.err(f"router --api_keys_file: Secret volume {name} is optional; it must be required, so that "
                     f"a missing Secret keeps the pod from starting")
        if any(c["spec"]["secretName"] == name for c in self.by_kind.get("Certificate", {}).values()):
            self.err(f"router --api_keys_file reads Secret {name} of a cert-manager Certificate")
        rel = path[len(mount["mountPath"].rstrip("/")) + 1:]
        items = secret.get("items")
        key = next((i["key"] for i in items if i["path"] == rel), None) if items is not None else rel
        if key is None:
            self.err(f"router --api_keys_file={path}: {rel} is not among the items of Secret volume {name}")
        elif key != API_KEYS_SECRET_KEY:
            self.err(f"router --api_keys_file reads key {key} of Secret {name}, expected {API_KEYS_SECRET_KEY}")
