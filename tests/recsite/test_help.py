"""The help page: docs/guide.md rendered from Markdown to safe HTML."""

from __future__ import annotations

import re

from django.urls import reverse

from recsite import views


def test_the_help_page_renders_the_guide_as_html(client_as):
    html = client_as("editor").get(reverse("help")).content.decode()
    assert 'id="segments"' in html
    assert "<strong>all of</strong>" in html  # **all of** in docs/guide.md
    assert re.search(r"<ol>\s*<li>Segments \u203a New segment", html)
    assert "**" not in html


def test_raw_html_and_unsafe_links_in_the_guide_are_not_passed_through(client_as, tmp_path, monkeypatch):
    guide = tmp_path / "guide.md"
    guide.write_text(
        "# Guide\n\n## Tricks\n\n"
        "<script>alert(1)</script>\n\n"
        'Some <img src=x onerror="alert(2)"> text and a [bad link](javascript:alert(3)) '
        "and a [good one](https://example.com/docs).\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "![A screenshot](images/shot.png)\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(views, "GUIDE", guide)
    response = client_as("editor").get(reverse("help"))
    body = response.content.decode()
    section = body[body.index('id="tricks"') :]
    assert "<script>alert" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "<img src=x" not in body and "&lt;img" in section
    assert 'href="javascript:' not in body and "[bad link](javascript:alert(3))" in section
    assert '<a href="https://example.com/docs">good one</a>' in section
    assert "<td>1</td>" in section  # tables are rendered
    assert "shot.png" not in section  # screenshots are for the Markdown viewers of docs/
    # The CSP allows no inline script: the guide adds none, and no style attributes either.
    guide_html = section[: section.index("</main>")] if "</main>" in section else section
    assert "<script" not in guide_html.split("</section>")[0]
    assert "style=" not in guide_html.split("</section>")[0]
    assert "script-src 'self'" in response["Content-Security-Policy"]
