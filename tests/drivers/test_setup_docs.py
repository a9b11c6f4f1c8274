"""What a newcomer meets first: the README's set-up, the package metadata, what git keeps."""

from __future__ import annotations

import tomllib

from tests.support.fixtures import ROOT


def test_readme_says_where_the_netkit_command_is_and_examples_serve_their_own_directory():
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/netkit" in readme and "source\n.venv/bin/activate" in readme
    for text in (readme, (ROOT / "docs" / "servers" / "tls.md").read_text(),
                 (ROOT / "servers" / "tls-terminator.toml").read_text()):
        for line in text.splitlines():
            if "http.server" in line:  # never serving the clone, where certs/ holds keys
                assert "--directory" in line, line


def test_certificates_are_not_committed_and_the_license_is_an_spdx_string():
    assert "certs/" in (ROOT / ".gitignore").read_text().split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # no deprecation box per install
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])
