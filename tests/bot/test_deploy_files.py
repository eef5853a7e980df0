"""bot/: Dockerfile, Helm chart, GitHub App manifest and example bot.yml stay consistent with the code.

No container engine or helm binary runs here, so these check what can be checked offline:
every ``.Values`` path a template uses exists, every secret env var names a real setting,
the manifest's permissions are valid GitHub App permissions (per GitHub's OpenAPI
description) and its events are exactly those the intake uses.
"""

from __future__ import annotations

import json
import re

import jsonschema
from ruamel.yaml import YAML

from mlgate.core import intake
from mlgate.bot.settings import BotSettings, env_name, json_schema
from tests.conftest import ROOT

BOT = ROOT / "bot"
CHART = BOT / "chart"


def _yaml(path):
    return YAML(typ="safe").load(path.read_text())


def test_dockerfile_runs_as_non_root_with_a_health_check():
    text = (BOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert 'ENTRYPOINT ["mlgate", "bot", "serve"]' in text
    for line in re.findall(r"^ENV .*(?:\n\s+.*)*", text, re.M):
        assert not re.search(r"SECRET|TOKEN|PRIVATE_KEY", line), "no secret baked into the image"
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists(), f"COPY source {src} missing"


def _lookup(values: dict, dotted: str) -> bool:
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_chart_templates_only_use_existing_values():
    chart = _yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "mlgate-bot"
    values = _yaml(CHART / "values.yaml")
    used = set()
    for tpl in (CHART / "templates").glob("*"):
        used |= set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", tpl.read_text()))
    assert used
    missing = sorted(u for u in used if not _lookup(values, u))
    assert not missing, f"templates use values not in values.yaml: {missing}"


def test_chart_has_deployment_service_probes_resources_and_secret_references():
    templates = {p.name: p.read_text() for p in (CHART / "templates").glob("*.yaml")}
    dep = templates["deployment.yaml"]
    assert "kind: Deployment" in dep and "kind: Service" in templates["service.yaml"]
    for probe in ("livenessProbe", "readinessProbe", "resources", "secretKeyRef", "podSecurityContext"):
        assert probe in dep
    values = _yaml(CHART / "values.yaml")
    assert values["probes"]["liveness"]["path"] == "/healthz" and values["probes"]["readiness"]["path"] == "/readyz"
    assert values["podSecurityContext"]["runAsNonRoot"] is True and values["podSecurityContext"]["runAsUser"] != 0
    assert values["resources"]["requests"] and values["resources"]["limits"]
    # every secret env var the chart can set is a real setting, and every secret setting can be set
    env_vars = set(re.findall(r'"(MLGATE_[A-Z_]+)" \.Values\.secret\.keys\.', dep))
    settings_env = {env_name(f) for f in BotSettings.model_fields}
    assert env_vars <= settings_env
    from mlgate.bot.settings import SECRET_FIELDS

    assert {env_name(f) for f in SECRET_FIELDS} | {"MLGATE_GITHUB_APP_ID", "MLGATE_DATABASE_URL"} == env_vars
    # the chart's bot.yml is valid and holds no secret
    jsonschema.validate(values["config"], json_schema())
    assert not set(values["config"]) & set(SECRET_FIELDS)


def test_github_app_manifest_is_least_privilege_and_subscribes_to_the_used_events():
    manifest = json.loads((BOT / "github-app-manifest.json").read_text())
    assert set(manifest["default_events"]) == set(intake.GITHUB_EVENTS)
    assert manifest["hook_attributes"]["url"].endswith("/webhooks/github")
    assert manifest["public"] is False
    openapi = json.loads((ROOT / "node_modules/@octokit/openapi/generated/api.github.com.json").read_text())
    known = openapi["components"]["schemas"]["app-permissions"]["properties"]
    perms = manifest["default_permissions"]
    for name, level in perms.items():
        assert name in known and level in known[name]["enum"], (name, level)
    # why each one (the endpoints are listed in src/mlgate/forges/github.py):
    assert perms == {
        "metadata": "read",        # mandatory; collaborator permission look-ups
        "contents": "write",       # read .mlgate.yml, create promotion branches and commits
        "pull_requests": "write",  # reviews, promotion PRs, PR comments and labels
        "issues": "read",          # receive issue_comment events on PRs
        "statuses": "write",       # the mlgate/gates commit status
        "members": "read",         # team membership of promoters and reviewers
    }


def test_example_bot_yml_validates():
    jsonschema.validate(_yaml(BOT / "bot.yml"), json_schema())


def test_the_example_writes_nothing_outside_its_directory_and_the_image_and_chart_use_the_volume(tmp_path):
    """Issue 11: ``mlgate bot serve --config bot/bot.yml`` created /var/lib/mlgate/bot.db on the
    host. The example keeps the relative default; the image and the chart name the volume."""
    import subprocess

    from mlgate.bot.settings import load_settings

    example = load_settings(BOT / "bot.yml", {})
    assert example.database_url == BotSettings.model_fields["database_url"].default
    assert re.fullmatch(r"sqlite:///[^/].*", example.database_url), example.database_url  # relative
    # the image: bot.yml is the example plus what the Dockerfile appends, run as the image runs it
    docker = (BOT / "Dockerfile").read_text()
    assert "COPY bot/bot.yml /etc/mlgate/bot.yml" in docker
    appends = re.findall(r"^RUN (printf .*) >> /etc/mlgate/bot\.yml$", docker, re.M)
    assert appends
    image_yml = tmp_path / "bot.yml"
    image_yml.write_text((BOT / "bot.yml").read_text())
    for cmd in appends:
        subprocess.run(["sh", "-c", f"{cmd} >> {image_yml}"], check=True)
    assert load_settings(image_yml, {}).database_url == "sqlite:////var/lib/mlgate/bot.db"
    assert 'VOLUME ["/var/lib/mlgate"]' in docker
    # the chart: its bot.yml names the mounted volume
    values = _yaml(CHART / "values.yaml")
    assert values["config"]["database_url"] == "sqlite:////var/lib/mlgate/bot.db"
    assert "mountPath: /var/lib/mlgate" in (CHART / "templates" / "deployment.yaml").read_text()
