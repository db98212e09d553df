"""Offline checks of the Kubernetes artefacts (no cluster can run here).

- The Helm chart is rendered with the real Helm library (helm-python-sdk)
  for default and non-default values and linted strictly; any lint finding
  of severity >= 2 (warning, error) fails.
- values.schema.json rejects bad values.
- Every rendered object, both CRD files, and every object that
  `synod-operator render` prints for the example resources are validated
  with kubernetes-validate --strict against Kubernetes 1.33; a missing
  schema fails for every kind but the Prometheus Operator's ServiceMonitor.
  cert-manager Certificates are validated against cert-manager's v1 API
  (cloudcoil-models-cert-manager's models, generated from its CRDs), and
  must round-trip through them unchanged (no unknown field).
- The example CoordinationEnsembles are validated against the CRD's
  openAPIV3Schema (jsonschema), and bad ones are rejected.

Usage: check.py REPO_ROOT SYNOD_OPERATOR_BINARY
Prints "k8s: N passed, N failed" and exits non-zero on any failure.
"""

import copy
import glob
import json
import os
import subprocess
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import pydantic
import yaml
from cloudcoil.models.cert_manager import v1 as cert_manager_v1

KUBE_VERSION = "1.33.0"
# Kinds whose schemas kubernetes-validate does not ship (not built in).
FOREIGN_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # a check's failure is reported, not raised
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
    else:
        passed += 1
        print(f"ok   {name}")


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def validate_certificate(obj, where):
    """A cert-manager Certificate against cert-manager's v1 models: types
    and enums are checked by pydantic, unknown fields by the round trip."""
    try:
        model = cert_manager_v1.Certificate.model_validate(obj)
    except pydantic.ValidationError as e:
        raise AssertionError(f"{where}: Certificate/{obj['metadata'].get('name')}: {e}")
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    if dumped != obj:
        raise AssertionError(f"{where}: Certificate/{obj['metadata'].get('name')} does not "
                             f"round-trip (unknown field?): {json.dumps(obj, sort_keys=True)}")


def validate_object(obj, where):
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key == ("cert-manager.io/v1", "Certificate"):
        validate_certificate(obj, where)
        return
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        if key not in FOREIGN_KINDS:
            raise AssertionError(f"{where}: no Kubernetes {KUBE_VERSION} schema for {key}")
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        raise AssertionError(f"{where}: {key[1]}/{obj['metadata'].get('name')}: {path}: {e.message}")


def main():
    root, binary = sys.argv[1], sys.argv[2]
    chart_dir = os.path.join(root, "charts", "synod-operator")
    chart = helm.Chart.load(chart_dir)

    value_sets = {
        "default": {},
        "everything-on": {
            "watchNamespace": "release",
            "image": {"repository": "registry.example.com/synod/operator", "tag": "9.9.9",
                      "pullPolicy": "Always"},
            "imagePullSecrets": ["regcred"],
            "nodeImage": {"repository": "registry.example.com/synod/synod", "tag": "9.9.9"},
            "serviceAccount": {"create": True, "name": "synod-op",
                               "annotations": {"example.com/role": "operator"}},
            "metrics": {"port": 9090, "serviceMonitor": {"enabled": True, "interval": "15s",
                                                         "labels": {"release": "prom"}}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra",
                             "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"example.com/a": "b"},
            "logJson": False,
        },
        "existing-service-account": {"serviceAccount": {"create": False, "name": "prebuilt"}},
    }

    for label, values in value_sets.items():
        def lint(values=values):
            result = helm.lint(chart_dir, values, strict=True, namespace="synod-system",
                               kube_version=KUBE_VERSION)
            bad = [m for m in result["messages"] if m["severity"] >= 2]
            assert result["total_charts_linted"] == 1, result
            assert not bad and not result["errors"], result
        check(f"helm lint --strict ({label})", lint)

        def render(values=values, label=label):
            out = chart.render(values, name="synod-operator", namespace="synod-system",
                               is_install=True)
            # NOTES.txt is shown to the user after an install, not applied.
            notes = [t for path, t in out.items() if path.endswith("/NOTES.txt")]
            assert len(notes) == 1 and "CoordinationEnsemble" in notes[0], notes
            objects = [o for path, text in out.items() if not path.endswith("/NOTES.txt")
                       for o in documents(text)]
            kinds = sorted({o["kind"] for o in objects})
            assert "Deployment" in kinds and "ServiceAccount" in kinds or label == "existing-service-account", kinds
            for obj in objects:
                validate_object(obj, f"chart ({label})")
            deployment = next(o for o in objects if o["kind"] == "Deployment")
            assert deployment["spec"]["strategy"]["type"] == "Recreate"
            assert deployment["spec"]["replicas"] == 1
            if label == "everything-on":
                assert {"ServiceMonitor", "Role", "RoleBinding"} <= set(kinds), kinds
            if label == "default":
                assert "ServiceMonitor" not in kinds, kinds
                assert {"ClusterRole", "ClusterRoleBinding"} <= set(kinds), kinds
            # The operator makes each ensemble's NetworkPolicy, not the chart.
            assert "NetworkPolicy" not in kinds, kinds
            check_operator_rights(objects)
            check_operator_pod_labels(deployment)
            return objects
        check(f"helm render + kubernetes-validate --strict ({label})", render)

    bad_values = {
        "unknown key": {"replicaCount": 2},
        "bad pull policy": {"image": {"repository": "x", "pullPolicy": "Sometimes"}},
        "bad watchNamespace": {"watchNamespace": "some"},
        "port as string": {"metrics": {"port": "8080"}},
        "bad interval": {"metrics": {"serviceMonitor": {"interval": "soon"}}},
        # Each ensemble's NetworkPolicy is the operator's now.
        "the removed networkPolicy value": {"networkPolicy": {"enabled": True}},
    }
    for label, values in bad_values.items():
        def rejected(values=values):
            try:
                chart.render(values, name="synod-operator", namespace="synod-system")
            except helm.HelmError:
                return
            raise AssertionError(f"values.schema.json accepted {values}")
        check(f"values.schema.json rejects {label}", rejected)

    crd_files = [os.path.join(root, "crds", "coordinationensemble.yaml"),
                 os.path.join(chart_dir, "crds", "coordinationensemble.yaml")]
    crd = None
    for path in crd_files:
        def crd_valid(path=path):
            with open(path) as f:
                (obj,) = documents(f.read())
            validate_object(obj, path)
        check(f"CRD valid: {os.path.relpath(path, root)}", crd_valid)
    with open(crd_files[0]) as f:
        crd = documents(f.read())[0]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    examples = sorted(glob.glob(os.path.join(root, "operator", "examples", "*.yaml")))
    assert examples, "no example resources"
    for path in examples:
        name = os.path.relpath(path, root)

        def rendered(path=path, name=name):
            out = subprocess.run([binary, "render", "-f", path, "--operator-namespace", "ops"],
                                 check=True, capture_output=True, text=True, timeout=60).stdout
            objects = documents(out)
            assert len(objects) >= 7, f"only {len(objects)} objects"
            for obj in objects:
                validate_object(obj, f"render {name}")
            assert "cluster.local" not in out
            check_rendered_policy(objects, "ops")
            if "tls" in documents(open(path).read())[0]["spec"]:
                check_rendered_tls(objects)
        check(f"synod-operator render + kubernetes-validate --strict: {name}", rendered)

        def against_crd(path=path):
            with open(path) as f:
                for obj in documents(f.read()):
                    validate_cr(schema, obj)
        check(f"example valid against the CRD schema: {name}", against_crd)

    with open(examples[0]) as f:
        good = documents(f.read())[0]
    bad_crs = {
        "replicas above 9": ("spec", "replicas", 11),
        "replicas as text": ("spec", "replicas", "three"),
        "unknown reclaim policy": ("storage", "reclaimOnScaleDown", "Maybe"),
        "unknown anti-affinity type": ("antiAffinity", "type", "Sometimes"),
    }
    for label, (section, field, value) in bad_crs.items():
        def rejected(section=section, field=field, value=value):
            obj = copy.deepcopy(good)
            target = obj["spec"] if section == "spec" else obj["spec"].setdefault(section, {})
            target[field] = value
            try:
                validate_cr(schema, obj)
            except jsonschema.ValidationError:
                return
            raise AssertionError("accepted")
        check(f"CRD schema rejects {label}", rejected)

    bad_tls = {
        "an unknown issuer kind": {"issuerRef": {"name": "ca", "kind": "Vault"}},
        "an unknown clientCerts mode": {"issuerRef": {"name": "ca"}, "clientCerts": "sometimes"},
        "secrets without the admin Secret": {"secrets": {"server": "node-tls"}},
        "an issuer without a name": {"issuerRef": {"kind": "Issuer"}},
    }
    for label, tls in bad_tls.items():
        def tls_rejected(tls=tls):
            obj = copy.deepcopy(good)
            obj["spec"]["tls"] = tls
            try:
                validate_cr(schema, obj)
            except jsonschema.ValidationError:
                return
            raise AssertionError("accepted")
        check(f"CRD schema rejects spec.tls with {label}", tls_rejected)

    print(f"k8s: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def check_operator_rights(objects):
    """The role lets the operator apply NetworkPolicies and cert-manager
    Certificates and get (only get) Secrets."""
    (role,) = [o for o in objects if o["kind"] in ("ClusterRole", "Role")]
    def verbs(group, resource):
        return {v for r in role["rules"] if group in r["apiGroups"] and resource in r["resources"]
                for v in r["verbs"]}
    assert {"get", "create", "patch"} <= verbs("networking.k8s.io", "networkpolicies"), role
    assert {"get", "create", "patch"} <= verbs("cert-manager.io", "certificates"), role
    assert verbs("", "secrets") == {"get"}, role


def check_operator_pod_labels(deployment):
    """What the operator puts in each ensemble's NetworkPolicy as its own
    pods' labels and namespace matches the pods the chart runs."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SYNOD_OPERATOR_POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    pairs = dict(p.split("=", 1) for p in env["SYNOD_OPERATOR_POD_LABELS"]["value"].split(","))
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pairs and all(template_labels.get(k) == v for k, v in pairs.items()), (pairs, template_labels)


def check_rendered_tls(objects):
    """An ensemble with spec.tls: Certificates, mounted Secrets, TLS flags,
    and the admin port for the operator only."""
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Certificate") == 2, kinds
    assert kinds.index("Certificate") < kinds.index("StatefulSet"), kinds
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    for flag in ("--tls-cert", "--tls-key", "--tls-ca", "--tls-admin-ca", "--tls-client-certs",
                 "--zookeeper-secure-addr", "--admin-addr"):
        assert flag in args, args
    assert "--admin-allow-remote" not in args, args
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert set(secrets) == {"tls", "admin-ca"}, secrets
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] in secrets)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["admin"] == 7300 and ports["zookeeper-tls"] == 2281, ports


def check_rendered_policy(objects, operator_namespace):
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    rules = policy["spec"]["ingress"]
    admin = [r for r in rules if {"port": 7300, "protocol": "TCP"} in r["ports"]]
    assert len(admin) == 1 and len(admin[0]["ports"]) == 1, rules
    (peer,) = admin[0]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": operator_namespace}, peer
    assert peer["podSelector"]["matchLabels"], peer
    assert all("from" in r for r in rules if any(p["port"] in (7100, 7300) for p in r["ports"])), rules


def openapi_to_jsonschema(node):
    """The CRD's structural schema as JSON Schema: `nullable: true` allows
    null; `x-kubernetes-*` are extensions jsonschema ignores anyway."""
    if isinstance(node, dict):
        out = {k: openapi_to_jsonschema(v) for k, v in node.items()
               if not k.startswith("x-kubernetes-") and k != "nullable"}
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [openapi_to_jsonschema(v) for v in node]
    return node


def validate_cr(schema, obj):
    assert obj["apiVersion"] == "synod.io/v1alpha1" and obj["kind"] == "CoordinationEnsemble"
    jsonschema.Draft7Validator(openapi_to_jsonschema(schema)).validate(obj)


if __name__ == "__main__":
    sys.exit(main())
