"""``mlgate manifest set`` as a user runs it: a real process on temporary copies of real manifests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MLGATE = str(Path(sys.executable).parent / "mlgate")
CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"
PMML = CORPUS / "kserve" / "kserve__kserve__docs__samples__v1beta1__pmml__pmml.yaml"  # CRLF
CANARY = CORPUS / "kserve" / "kserve__kserve__docs__samples__v1beta1__rollout__canary.yaml"  # old layout
SPLITTER = CORPUS / "kserve" / "kserve__kserve__docs__samples__graph__splitter.yaml"  # 3 documents
KUSTOMIZE = CORPUS / "kustomize" / "kubernetes-sigs__kustomize__examples__transformerconfigs__images__kustomization.yaml"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_OUTPUT"}
    full_env.update(env or {})
    proc = subprocess.run([MLGATE, "manifest", "set", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "gitops"
    (root / "prod").mkdir(parents=True)
    for src, name in [(PMML, "pmml.yaml"), (CANARY, "canary.yaml"), (SPLITTER, "splitter.yaml"),
                      (KUSTOMIZE, "kustomization.yaml")]:
        shutil.copyfile(src, root / "prod" / name)
    return root


def line_diff(old: bytes, new: bytes) -> list[int]:
    a, b = old.split(b"\n"), new.split(b"\n")
    assert len(a) == len(b)
    return [i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y]


def test_set_changes_one_line_and_keeps_crlf(repo: Path):
    f = repo / "prod" / "pmml.yaml"
    before = f.read_bytes()
    p = run("prod/pmml.yaml", "spec.predictor.pmml.storageUri", "models:/fraud/7", cwd=repo)
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'prod/pmml.yaml:8: spec.predictor.pmml.storageUri: "gs://kfserving-examples/models/pmml" -> "models:/fraud/7"\n'
    after = f.read_bytes()
    assert line_diff(before, after) == [8]
    assert after == before.replace(b"gs://kfserving-examples/models/pmml\r\n", b"models:/fraud/7\r\n")


def test_already_set_is_exit_0_with_a_note_and_no_write(repo: Path):
    f = repo / "prod" / "pmml.yaml"
    assert run("prod/pmml.yaml", "spec.predictor.pmml.storageUri", "models:/fraud/7", cwd=repo).returncode == 0
    mtime = f.stat().st_mtime_ns
    content = f.read_bytes()
    p = run("prod/pmml.yaml", "spec.predictor.pmml.storageUri", "models:/fraud/7", cwd=repo)
    assert p.returncode == 0
    assert p.stdout == 'prod/pmml.yaml:8: spec.predictor.pmml.storageUri is already "models:/fraud/7"; nothing to change\n'
    assert f.read_bytes() == content and f.stat().st_mtime_ns == mtime


def test_check_prints_the_diff_and_writes_nothing(repo: Path):
    f = repo / "prod" / "kustomization.yaml"  # no final newline
    before = f.read_bytes()
    p = run("prod/kustomization.yaml", "images[name=my-app].newTag", "v2", "--check", cwd=repo)
    assert p.returncode == 0, p.stderr
    assert f.read_bytes() == before
    assert p.stdout.startswith("--- a/prod/kustomization.yaml\n+++ b/prod/kustomization.yaml\n@@ ")
    changed = [ln for ln in p.stdout.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == ["-  newTag: MYNEWTAG-1", "+  newTag: v2"]
    # the real edit keeps the missing final newline
    assert run("prod/kustomization.yaml", "images[name=my-app].newTag", "v2", cwd=repo).returncode == 0
    after = f.read_bytes()
    assert not after.endswith(b"\n") and line_diff(before, after) == [13]


def test_json_output_and_github_output(repo: Path, tmp_path: Path):
    gh = tmp_path / "github_output"
    gh.write_text("")
    env = {"GITHUB_OUTPUT": str(gh)}
    p = run("prod/canary.yaml", "spec.predictor.canaryTrafficPercent", "25", "--output", "json", cwd=repo, env=env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data == {"file": "prod/canary.yaml", "path": "spec.predictor.canaryTrafficPercent", "select": None,
                    "line": 8, "old": 10, "new": 25, "changed": True, "written": True, "notes": []}
    p2 = run("prod/canary.yaml", "spec.predictor.canaryTrafficPercent", "25", "-o", "json", cwd=repo, env=env)
    assert json.loads(p2.stdout)["changed"] is False
    assert gh.read_text() == "changed=true\nchanged=false\n"


def test_missing_path_in_old_layout_exits_2_and_writes_nothing(repo: Path):
    f = repo / "prod" / "canary.yaml"
    before = f.read_bytes()
    p = run("prod/canary.yaml", "spec.predictor.model.storageUri", "models:/fraud/7", cwd=repo)
    assert p.returncode == 2
    assert p.stderr.startswith("prod/canary.yaml:6: spec.predictor.model.storageUri: no key 'model' in spec.predictor")
    assert "tensorflow" in p.stderr and p.stdout == ""
    assert f.read_bytes() == before


def test_multi_document_needs_select(repo: Path):
    f = repo / "prod" / "splitter.yaml"
    before = f.read_bytes()
    p = run("prod/splitter.yaml", "spec.predictor.sklearn.storageUri", "x", cwd=repo)
    assert p.returncode == 0, p.stderr  # only one document has it
    assert line_diff(before, f.read_bytes()) == [9]
    p = run("prod/splitter.yaml", "metadata.name", "x", cwd=repo)
    assert p.returncode == 2
    assert p.stderr.startswith("prod/splitter.yaml: metadata.name exists in 3 documents")
    p = run("prod/splitter.yaml", "spec.predictor.xgboost.storageUri", "models:/x/1",
            "--select", "InferenceService/xgboost-iris", cwd=repo)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("prod/splitter.yaml:18: ")
    p = run("prod/splitter.yaml", "spec.predictor.xgboost.storageUri", "y", "--select", "InferenceService/nope", cwd=repo)
    assert p.returncode == 2 and p.stderr.startswith("prod/splitter.yaml: spec.predictor.xgboost.storageUri: no document matches InferenceService/nope")


def test_create_flag(repo: Path):
    f = repo / "prod" / "canary.yaml"
    p = run("prod/canary.yaml", "spec.predictor.tensorflow.runtimeVersion", "2.6.2", cwd=repo)
    assert p.returncode == 2 and "no key 'runtimeVersion'" in p.stderr
    p = run("prod/canary.yaml", "spec.predictor.tensorflow.runtimeVersion", "2.6.2", "--create", cwd=repo)
    assert p.returncode == 0, p.stderr
    assert "      runtimeVersion: 2.6.2\n" in f.read_text()


def test_paths_that_leave_the_repository_are_refused(repo: Path, tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("a: 1\n")
    (repo / "prod" / "link.yaml").symlink_to(outside)
    cases = [
        (["../outside.yaml"], "'..' in a manifest path is refused"),
        ([str(outside)], "outside the repository root"),
        (["prod/link.yaml"], "leads outside the repository through a symlink"),
    ]
    for args, message in cases:
        p = run(*args, "a", "2", cwd=repo)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)
    assert outside.read_text() == "a: 1\n"
    # an absolute path inside the root is fine; so is --root
    p = run(str(repo / "prod" / "canary.yaml"), "spec.predictor.canaryTrafficPercent", "30", cwd=repo)
    assert p.returncode == 0, p.stderr
    p = run("outside.yaml", "a", "3", "--root", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0 and outside.read_text() == "a: 3\n"


def test_symlink_inside_the_repository_edits_its_target(repo: Path):
    link = repo / "current.yaml"
    link.symlink_to("prod/canary.yaml")
    p = run("current.yaml", "spec.predictor.canaryTrafficPercent", "40", cwd=repo)
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and "canaryTrafficPercent: 40" in (repo / "prod" / "canary.yaml").read_text()


def test_duplicate_key_and_missing_file(repo: Path):
    (repo / "dup.yaml").write_text("image:\n  tag: a\n  tag: b\n")
    p = run("dup.yaml", "image.tag", "c", cwd=repo)
    assert p.returncode == 2 and p.stderr.startswith("dup.yaml:3: image.tag: duplicate key 'tag' (first at line 2)")
    p = run("nope.yaml", "a", "b", cwd=repo)
    assert p.returncode == 2 and p.stderr == "nope.yaml: file not found\n"


def test_json_output_on_error(repo: Path):
    p = run("prod/canary.yaml", "spec.predictor.model.storageUri", "x", "-o", "json", cwd=repo)
    assert p.returncode == 2
    data = json.loads(p.stdout)
    assert data["changed"] is False and data["error"].startswith("prod/canary.yaml:6: spec.predictor.model.storageUri:")


def test_non_utf8_file_is_refused(repo: Path):
    (repo / "latin1.yaml").write_bytes(b"a: 1\nname: caf\xe9\n")
    p = run("latin1.yaml", "a", "2", cwd=repo)
    assert p.returncode == 2 and p.stderr == "latin1.yaml:2: not UTF-8 text (byte 0xe9); refused\n"


def test_file_edge_keeps_bytes_and_permissions(tmp_path: Path):
    """mlgate.edge.files: exact bytes in and out, mode kept, writes through an inner symlink."""
    from mlgate.core.errors import ManifestError
    from mlgate.edge.files import read_text, resolve_in_repo, write_text

    root = tmp_path / "repo"
    root.mkdir()
    f = root / "a.yaml"
    f.write_bytes(b"\xef\xbb\xbfa: 1\r\nb: 2")  # BOM, CRLF, no final newline
    f.chmod(0o640)
    text = read_text(resolve_in_repo(root, "a.yaml"))
    assert text == "\ufeffa: 1\r\nb: 2"
    write_text(resolve_in_repo(root, "a.yaml"), text.replace("2", "3"))
    assert f.read_bytes() == b"\xef\xbb\xbfa: 1\r\nb: 3" and (f.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in root.iterdir()) == ["a.yaml"]  # no temporary file left behind
    for bad in ["/etc/hosts", "../x.yaml", "a/../../x.yaml", "", "C:\\x.yaml"]:
        with pytest.raises(ManifestError):
            resolve_in_repo(root, bad)
    (root / "out").symlink_to(tmp_path)
    with pytest.raises(ManifestError, match="through a symlink"):
        resolve_in_repo(root, "out/x.yaml")


def test_comment_after_an_anchor_survives_and_the_value_line_is_reported(tmp_path: Path):
    f = tmp_path / "isvc.yaml"
    text = ("spec:\n  predictor:\n    model:\n      storageUri: &uri # set by mlgate promote\n"
            "        s3://models/wine/1\n      runtime: x\n")
    f.write_text(text)
    p = run("isvc.yaml", "spec.predictor.model.storageUri", "s3://models/wine/2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'isvc.yaml:5: spec.predictor.model.storageUri: "s3://models/wine/1" -> "s3://models/wine/2"\n'
    assert f.read_text() == text.replace("wine/1", "wine/2")


def test_value_that_is_not_utf8_exits_2_and_writes_nothing(tmp_path: Path):
    f = tmp_path / "m.yaml"
    f.write_text("a: x\n")
    p = run("m.yaml", "a", os.fsdecode(b"caf\xe9"), cwd=tmp_path)  # what a Latin-1 shell passes for $'caf\xe9'
    assert p.returncode == 2
    assert "m.yaml: a: the new value is not valid Unicode text (character 4 is U+DCE9" in p.stderr
    assert f.read_text() == "a: x\n" and p.stdout == ""


def test_json_manifest_gets_a_json_string(tmp_path: Path):
    f = tmp_path / "m.json"
    f.write_text('{"metadata": {"labels": {"v": null}}, "spec": {"replicas": 1}}\n')
    assert run("m.json", "metadata.labels.v", "stable", cwd=tmp_path).returncode == 0
    assert run("m.json", "spec.replicas", "3", cwd=tmp_path).returncode == 0
    assert json.loads(f.read_text()) == {"metadata": {"labels": {"v": "stable"}}, "spec": {"replicas": 3}}


def test_tagged_value_the_tag_cannot_hold_exits_2(tmp_path: Path):
    f = tmp_path / "m.yaml"
    f.write_text("a: !!timestamp 2020-01-01\n")
    p = run("m.yaml", "a", "garbage", cwd=tmp_path)
    assert p.returncode == 2 and "!!timestamp" in p.stderr
    assert f.read_text() == "a: !!timestamp 2020-01-01\n"


@pytest.mark.parametrize("check", [False, True])
def test_unwritable_github_output_exits_2_before_the_manifest_is_written(tmp_path: Path, check: bool):
    f = tmp_path / "go.yaml"
    f.write_text("a: 1\n")
    out = tmp_path / "nonexistent-dir" / "out"
    p = run("go.yaml", "a", "2", *(["--check"] if check else []), cwd=tmp_path, env={"GITHUB_OUTPUT": str(out)})
    assert p.returncode == 2, p.stderr
    assert f"$GITHUB_OUTPUT ({out}) cannot be opened for append: No such file or directory" in p.stderr
    assert f.read_text() == "a: 1\n" and not out.parent.exists() and p.stdout == ""
