"""Real git repositories for the provenance tests: ``git`` runs a command in one, ``committed_repo``
makes one with a first commit of the given files on branch ``main``."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def committed_repo(root: Path, files: dict[str, str]) -> Path:
    """``root`` made a git repository whose one commit holds ``files`` (name -> text)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "add", *files)
    git(root, "commit", "-q", "-m", "first")
    return root
