"""git's stderr in messages: every line that says something, secrets masked, progress dropped."""

from mlgate.core.gitmsg import git_said, with_git_output

CLONE_SSH = (
    "Cloning into '/tmp/x'...\n"
    "ssh: Could not resolve hostname github.com: Name or service not known\r\n"
    "fatal: Could not read from remote repository.\n\n"
    "Please make sure you have the correct access rights\nand the repository exists.\n"
)


def test_the_cause_is_kept_and_the_noise_dropped():
    said = git_said(CLONE_SSH)
    assert said.splitlines() == [
        "ssh: Could not resolve hostname github.com: Name or service not known",
        "fatal: Could not read from remote repository.",
        "Please make sure you have the correct access rights",
        "and the repository exists.",
    ]
    progress = ("remote: Enumerating objects: 5, done.\nremote: Counting objects:  40% (2/5)\r"
                "remote: Counting objects: 100% (5/5), done.\nReceiving objects: 100% (5/5)\r"
                "Resolving deltas: 100% (1/1), done.\nTo https://h/a.git\n"
                "hint: Updates were rejected\nremote: error: GH006: Protected branch\n")
    assert git_said(progress) == "remote: error: GH006: Protected branch"


def test_secrets_are_masked():
    text = ("fatal: unable to access 'https://oauth2:glpat-abcdefghijklmnopqrstu@gitlab.com/a/b.git/': "
            "The requested URL returned error: 403\nAuthorization: Bearer sekrit-value-123\n")
    said = git_said(text)
    assert "glpat-" not in said and "sekrit" not in said and "oauth2:***@gitlab.com" in said


def test_one_line_stays_on_the_message_line_and_none_gives_the_fallback():
    assert with_git_output("push failed", "error: x\n", "unknown") == "push failed: error: x"
    assert with_git_output("push failed", "Cloning into 'x'...\n", "unknown") == "push failed: unknown"
    assert with_git_output("m", CLONE_SSH, "-").startswith("m; git said:\n  ssh: Could not resolve")
