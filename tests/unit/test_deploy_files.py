"""deploy/: every Kubernetes and Compose file parses, and everything they refer to exists and agrees — local
files and mounts, ports (container ↔ Service ↔ ServiceMonitor ↔ 9862), names, labels, image build
arguments, the secure pod spec, shards ↔ replicas, and the PrometheusRule equals the one generated
from alerts/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config.settings import load_config
from exporter.metrics import monitoring

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PORT = 9862


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s() -> dict[str, dict[str, Any]]:
    """Kind -> object, over every file of deploy/kubernetes/ but the kustomization."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in _docs(path):
            assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path
            assert doc["kind"] not in out, f"two {doc['kind']} objects"
            out[doc["kind"]] = doc
    return out


def _dockerfile_args() -> set[str]:
    return set(re.findall(r"^ARG (\w+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE))


def _exposed() -> set[int]:
    return {int(p) for p in re.findall(r"^EXPOSE (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)}


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(files) >= 10
    for path in files:
        assert _docs(path), path


def test_prometheusrule_is_generated_from_alerts() -> None:
    proc = subprocess.run([sys.executable, str(DEPLOY / "generate.py"), "--check"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    rule = _k8s()["PrometheusRule"]
    names = [g["name"] for g in rule["spec"]["groups"]]
    expected = []
    for source in ("azdo-exporter.recording.yml", "azdo-exporter.rules.yml"):
        expected += [g["name"] for g in yaml.safe_load((ROOT / "alerts" / source).read_text())["groups"]]
    assert names == expected


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk
    assert kustomization["namespace"] == _k8s()["Namespace"]["metadata"]["name"]


def test_statefulset_pod_spec_is_secure() -> None:
    sts = _k8s()["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc.get("privileged")
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert "USER 10001:10001" in (ROOT / "Dockerfile").read_text()


def test_ports_agree_everywhere() -> None:
    objects = _k8s()
    (container,) = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == PORT and PORT in _exposed()
    (service_port,) = objects["Service"]["spec"]["ports"]
    assert service_port["port"] == PORT and service_port["targetPort"] in (port["name"], PORT)
    assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == service_port["name"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], PORT)
    assert {p["port"] for rule in objects["NetworkPolicy"]["spec"]["ingress"] for p in rule["ports"]} == {PORT}
    config = yaml.safe_load(objects["ConfigMap"]["data"]["config.yaml"])
    assert config["listen"].endswith(f":{PORT}")


def test_names_and_labels_refer_to_each_other() -> None:
    objects = _k8s()
    sts = objects["StatefulSet"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert objects["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= \
        objects["Service"]["metadata"]["labels"].items()
    assert sts["spec"]["serviceName"] == objects["Service"]["metadata"]["name"]
    assert objects["Service"]["spec"]["clusterIP"] == "None"  # every pod (shard) is scraped on its own
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    # The rules select the scrape job by name; the ServiceMonitor's job is the Service's name.
    rules = (ROOT / "alerts" / "azdo-exporter.rules.yml").read_text()
    assert monitoring.JOB_SELECTOR in rules
    assert re.fullmatch(f"{monitoring.JOB}.*", objects["Service"]["metadata"]["name"])


def test_config_and_secret_are_mounted_where_the_exporter_reads_them(tmp_path: Path) -> None:
    objects = _k8s()
    pod = objects["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    config_arg = next(a for a in container["args"] if a.startswith("--config="))
    config_path = Path(config_arg.split("=", 1)[1])
    config_volume = mounts[str(config_path.parent)]
    assert config_volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert config_path.name in objects["ConfigMap"]["data"]
    config = yaml.safe_load(objects["ConfigMap"]["data"][config_path.name])
    pat_path = Path(config["pat_file"])
    secret_volume = mounts[str(pat_path.parent)]
    example = _docs(K8S / "secret.example.yaml")[0]
    assert secret_volume["secret"]["secretName"] == example["metadata"]["name"]
    assert pat_path.name in example["stringData"]
    assert secret_volume["secret"]["defaultMode"] == 0o440  # readable by the pod's fsGroup only
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] != "/tmp")
    # The configuration itself is valid (with the secret file where it would be mounted).
    pat = tmp_path / "pat"
    pat.write_text("x")
    text = objects["ConfigMap"]["data"][config_path.name].replace(str(pat_path), str(pat))
    (tmp_path / "config.yaml").write_text(text)
    assert load_config(str(tmp_path / "config.yaml"), {}).listen_port == PORT


def test_shard_count_equals_replicas_and_the_ordinal_becomes_the_index() -> None:
    sts = _k8s()["StatefulSet"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "--shard=$(SHARD_INDEX)/$(SHARD_COUNT)" in container["args"]
    assert int(env["SHARD_COUNT"]["value"]) == sts["spec"]["replicas"]
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"


def test_compose_stack_refers_to_existing_files_ports_and_build_arguments() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
    exporter = services["exporter"]
    context = (DEPLOY / exporter["build"]["context"]).resolve()
    assert context == ROOT and (context / exporter["build"]["dockerfile"]).is_file()
    assert set(exporter["build"]["args"]) <= _dockerfile_args()
    assert "--demo" in exporter["command"]
    listen = exporter["command"][exporter["command"].index("--listen") + 1]
    assert listen.endswith(f":{PORT}")
    assert any(p.endswith(f":{PORT}") for p in exporter["ports"])
    targets: dict[str, str] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            targets[target] = source
    # Prometheus: our config, our rules, the exporter and the Alertmanager of the stack.
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert targets["/etc/prometheus/prometheus.yml"] == "./prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    (rule_glob,) = prom["rule_files"]
    mounted_rules = {t for t in targets if Path(t).match(rule_glob)}
    assert {Path(targets[t]).name for t in mounted_rules} == {"azdo-exporter.rules.yml",
                                                              "azdo-exporter.recording.yml"}
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert monitoring.JOB in jobs
    assert jobs[monitoring.JOB]["static_configs"][0]["targets"] == [f"exporter:{PORT}"]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # Alertmanager: our example configuration.
    assert targets["/etc/alertmanager/alertmanager.yml"] == "../alerts/alertmanager.yml"
    # Grafana: our provisioning; the dashboards where the provider looks; the datasource is our Prometheus.
    assert targets["/etc/grafana/provisioning"] == "../grafana/provisioning"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/azdo.yml").read_text())["providers"][0]
    assert targets[provider["options"]["path"]] == "../grafana/dashboards"
    assert list((ROOT / "grafana/dashboards").glob("*.json"))
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert any(p.endswith(":9090") for p in services["prometheus"]["ports"])




def _mebibytes(quantity: str) -> float:
    value, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(value) * (1024 if unit == "Gi" else 1)


def test_memory_request_and_limit_follow_the_measured_figures() -> None:
    """Request >= the steady figure at ready; limit >= 1.25 x the whole-run peak (docs/performance.md)."""
    figures = re.search(r"peak RSS \(exporter\)\s*\|\s*(\d+) MiB.*?whole run (\d+) MiB",
                        (ROOT / "docs" / "performance.md").read_text())
    assert figures, "docs/performance.md no longer states the peak RSS"
    steady, peak = int(figures.group(1)), int(figures.group(2))
    (container,) = _k8s()["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    request = _mebibytes(container["resources"]["requests"]["memory"])
    limit = _mebibytes(container["resources"]["limits"]["memory"])
    assert steady <= request < peak
    assert limit >= 1.25 * peak
    assert (request, limit) == (384, 768)


def test_kube_prometheus_stack_selects_the_servicemonitor_and_the_rules() -> None:
    """kube-prometheus-stack's Prometheus loads only objects labelled release=<its Helm release>."""
    objects = _k8s()
    release = _load_deploy_generator().RELEASE
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert objects[kind]["metadata"]["labels"]["release"] == release, kind
    # Only those two: other objects carry no release label to confuse other selectors.
    assert [k for k, o in objects.items() if "release" in o["metadata"].get("labels", {})] == \
        ["PrometheusRule", "ServiceMonitor"]
    # The overlay sets another release name on exactly the monitoring.coreos.com objects.
    overlay = yaml.safe_load((DEPLOY / "kube-prometheus-stack" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../kubernetes"]
    (patch,) = overlay["patches"]
    assert patch["target"] == {"group": "monitoring.coreos.com"}
    assert {o["apiVersion"].split("/")[0] for o in objects.values() if "release" in o["metadata"]["labels"]} == \
        {"monitoring.coreos.com"}
    (op,) = yaml.safe_load(patch["patch"])
    assert op["op"] == "replace" and op["path"] == "/metadata/labels/release" and op["value"] != release


def _load_deploy_generator():  # type: ignore[no-untyped-def]
    import importlib.util
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_prometheusrule_from_your_mixin_override(tmp_path: Path) -> None:
    """alerts/generate.py --config ... --out DIR, then deploy/generate.py --rules DIR --out FILE."""
    (tmp_path / "my-mixin.yaml").write_text("alerts:\n  AzdoAgentPoolBacklog: {threshold: 25, severity: info}\n")
    for args in ([str(ROOT / "alerts" / "generate.py"), "--config", str(tmp_path / "my-mixin.yaml"),
                  "--out", str(tmp_path / "rules")],
                 [str(DEPLOY / "generate.py"), "--rules", str(tmp_path / "rules"), "--out", str(tmp_path / "pr.yaml")]):
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    rule = yaml.safe_load((tmp_path / "pr.yaml").read_text())
    assert rule["kind"] == "PrometheusRule" and rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts["AzdoAgentPoolBacklog"]["labels"]["severity"] == "info"
    assert alerts["AzdoAgentPoolBacklog"]["expr"].strip().endswith("> 25")
    shipped = _k8s()["PrometheusRule"]["spec"]["groups"]
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in shipped]


@pytest.mark.parametrize("path", ["docs/deployment.md", "README.md"])
def test_deployment_docs_exist_and_link(path: str) -> None:
    text = (ROOT / path).read_text()
    if path == "README.md":
        assert "## Deployment" in text and "docs/deployment.md" in text
    else:
        for topic in ("compose.yaml", "StatefulSet", "--shard", "web.config.file", "entra", "build-image.sh",
                      "## kube-prometheus-stack", "release: kube-prometheus-stack", "deploy/kube-prometheus-stack",
                      "serviceMonitorSelectorNilUsesHelmValues", "384Mi", "768Mi"):
            assert topic in text, topic
