"""The pytest plugin as users meet it: a test file run by a fresh pytest, the fixtures
found through the `pytest11` entry point, outcomes reported right, unmet expectations
failing at teardown. The examples of docs/testing-with-netkit.md are run as they are."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "testing-with-netkit.md"


def doc_examples() -> dict[str, str]:
    """The doc's python blocks that open with a file name comment: name -> source."""
    blocks = re.findall(r"```python\n# (test_\w+)\.py\n(.*?)```", DOC.read_text(), re.S)
    return dict(blocks)


def test_the_plugin_is_registered_by_the_entry_point() -> None:
    found = [ep for ep in entry_points(group="pytest11") if ep.name == "netkit"]
    assert [ep.value for ep in found] == ["netkit.testing.plugin"]


def test_every_example_in_the_docs_passes(pytester: pytest.Pytester) -> None:
    examples = doc_examples()
    assert len(examples) >= 4  # DNS, zone, HTTP, TLS
    pytester.makepyfile(**examples)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    tests = sum(source.count("\ndef test_") for source in examples.values())
    result.assert_outcomes(passed=tests)


def test_outcomes_and_teardown_failures_are_reported_right(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="""
        import urllib.error, urllib.request
        from dnslib import DNSRecord

        def test_passes(netkit_http):
            netkit_http.expect("GET", "/ok").respond(body="fine")
            assert urllib.request.urlopen(netkit_http.url_for("/ok")).read() == b"fine"

        def test_fails_in_the_test(netkit_dns):
            netkit_dns.add("api.test", "A", "192.0.2.1")
            r = DNSRecord.parse(DNSRecord.question("api.test").send(
                netkit_dns.host, netkit_dns.port, timeout=2))
            assert str(r.a.rdata) == "192.0.2.2"

        def test_an_expectation_never_met(netkit_http):
            netkit_http.expect("GET", "/never", times=2)

        def test_a_request_nothing_expected(netkit_http):
            try:
                urllib.request.urlopen(netkit_http.url_for("/surprise?x=1"))
            except urllib.error.HTTPError as exc:
                assert exc.code == 500
                assert b"no expectation for GET /surprise?x=1" in exc.read()
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_an_expectation_never_met*",
        "*unmet expectation: GET /never (expected 2 times, got 0)*",
    ])
    result.stdout.fnmatch_lines(["*unexpected request: GET /surprise?x=1*"])
    result.stdout.fnmatch_lines(["*FAILED test_user.py::test_fails_in_the_test*"])


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_off="def test_x(netkit_dns):\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:netkit", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'netkit_dns' not found*"])
