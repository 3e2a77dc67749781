"""The browser tests skip locally without a browser, but fail where they must run (CI)."""
import browser_support
import pytest


def test_missing_browser_skips_locally_and_fails_where_required(monkeypatch):
    monkeypatch.setattr(browser_support, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv(browser_support.REQUIRE_ENV, raising=False)
    assert "chromium" in browser_support.browser_missing()
    with pytest.raises(pytest.skip.Exception):
        browser_support.require_browser()
    monkeypatch.setenv(browser_support.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="must run here"):
        browser_support.require_browser()


def test_ci_sets_the_requirement():
    """.ci/run exports DETR_VIZ_REQUIRE_BROWSER=1 and checks /usr/bin/chromium itself (not any chromium on PATH)."""
    from conftest import REPO
    ci = (REPO / ".ci" / "run").read_text()
    assert f"export {browser_support.REQUIRE_ENV}=1" in ci
    assert "test -x /usr/bin/chromium" in ci and "command -v chromium" not in ci
