"""A local GitHub stand-in speaking the real protocols over a real socket.

Used by ampx's test suite and by ``ampx demo`` so the whole task loop (app
authentication, git push, Actions runs and logs, pull requests, merge) runs
offline against the same client code that talks to github.com:

* REST: every operation of ``ampx/sandbox/github-rest-subset.json`` (an
  official GitHub OpenAPI subset) under ``{url}/api/v3`` (GitHub Enterprise
  layout, so PyGithub is configured with ``base_url=emulator.api_url``), with
  GitHub's auth model (app JWT -> installation token; personal tokens),
  permissions, ETags/304, rate-limit headers, pagination and error bodies;
* GraphQL at ``{url}/api/graphql``: the one mutation ampx sends,
  ``markPullRequestReadyForReview`` (:mod:`.graphql`), firing ``ready_for_review``;
* git smart HTTP at ``{url}/<owner>/<repo>.git`` served by ``git http-backend``
  behind HTTP Basic auth (any username, a token as password);
* an Actions stand-in (:mod:`.ci`) running workflow ``run:`` steps with bash on
  every push and pull request event (opened, synchronize, reopened,
  ready_for_review), producing runs, jobs, check runs and logs in GitHub's format;
* fault injection (:class:`.faults.Faults`) and determinism knobs for tests.

It is a stand-in, not a security boundary: bind it to localhost only.
"""

from .ci import CI
from .emulator import AppCredentials, GitHubEmulator
from .faults import Faults
from .state import Job, PullRequest, Repo, WorkflowRun
from .stats import EndpointStats, Stats

__all__ = [
    "AppCredentials",
    "CI",
    "EndpointStats",
    "Faults",
    "GitHubEmulator",
    "Job",
    "PullRequest",
    "Repo",
    "Stats",
    "WorkflowRun",
]
