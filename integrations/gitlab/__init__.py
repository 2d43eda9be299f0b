"""GitLab: CI pipeline builds and the code host (branches, hooks) through python-gitlab."""
