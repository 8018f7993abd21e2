"""Debian packages the system tests need (SLURM, Chromium), installed with apt-get where missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time


def missing(commands: list[str], packages: list[str]) -> str | None:
    """Why `commands` cannot be had on this host, or None where they are here or apt can install them."""
    if all(shutil.which(command) for command in commands):
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"{', '.join(commands)} missing and only root may apt-get install {' '.join(packages)}"
    if not shutil.which("apt-get"):
        return f"{', '.join(commands)} missing and there is no apt-get to install {' '.join(packages)}"
    return None


def install(commands: list[str], packages: list[str], timeout: int = 900) -> str | None:
    """apt-get install `packages` unless `commands` are all here; the reason it failed, or None."""
    reason = missing(commands, packages)
    if reason or all(shutil.which(command) for command in commands):
        return reason
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    try:
        subprocess.run(["apt-get", "update"], check=True, env=env, timeout=timeout, capture_output=True)
        left = max(60, timeout - int(time.monotonic() - started))
        install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        subprocess.run(install, check=True, env=env, timeout=left, capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        return f"could not apt-get install {' '.join(packages)}: {error}"
    print(f"[apt] installed {' '.join(packages)} in {time.monotonic() - started:.0f} s")
    return None
