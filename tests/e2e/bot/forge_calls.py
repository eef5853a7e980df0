"""What the bot sent to the fake GitHub to write a promotion PR (issue 12: through GraphQL).

The fake records a GraphQL request as ``/graphql#<root fields>@<owner/name>`` (its root fields,
the repository its variables name): these regexes match the bot's promotion writes in one
GitOps repository, for ``FakeGitHub.calls``, ``fail_next``, ``on_request`` and ``after_request``.
"""

from __future__ import annotations

import re


def create_pr(deploy: str) -> str:
    """The mutation that opens a promotion PR in ``deploy`` (with its branch and commit)."""
    return rf"^/graphql#[\w,]*createPullRequest[\w,]*@{re.escape(deploy)}$"


def promotion_write(deploy: str) -> str:
    """Any mutation writing a promotion in ``deploy`` (branch, commit, PR; not the label call)."""
    return rf"^/graphql#[\w,]*(createRef|updateRef|createCommitOnBranch|PullRequest)[\w,]*@{re.escape(deploy)}$"


def label_calls(deploy: str) -> str:
    """The call that labels a promotion PR in ``deploy``: GraphQL ``addLabelsToLabelable``, or REST
    "Add labels to an issue" when the label does not exist yet (it creates it)."""
    return rf"^(/graphql#addLabelsToLabelable@{re.escape(deploy)}|/repos/{re.escape(deploy)}/issues/\d+/labels)$"
