"""One static HTML page: escaped text, tables, images and media as relative links, one inline style.

No JavaScript and no CDN, so a report opens from disk years later; the bytes depend only on what was
added, in order, so two reports of the same inputs are identical.
"""

from __future__ import annotations

import html
from pathlib import Path

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3 { font-weight: 600; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; max-width: 320px; }
img { max-width: 100%; }
video, audio { display: block; max-width: 320px; }
video { width: 192px; }
.grid { display: flex; flex-wrap: wrap; gap: 0.5em; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


class Page:
    """Append blocks in reading order, then `write(out_dir)`; paths given to image/video/audio are
    relative to out_dir (the files are the caller's to put there)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = [f"<h1>{esc(title)}</h1>"]

    def heading(self, text: str, level: int = 2) -> None:
        level = min(max(int(level), 1), 6)
        self._parts.append(f"<h{level}>{esc(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self._parts.append(f"<p>{esc(text)}</p>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        self._parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def image(self, rel_path: str, alt: str, caption: str | None = None) -> None:
        self._parts.append(_figure(f'<img src="{esc(rel_path)}" alt="{esc(alt)}">', caption))

    def video(self, rel_path: str, caption: str | None = None) -> None:
        tag = f'<video controls preload="metadata" muted><source src="{esc(rel_path)}" type="video/mp4"></video>'
        self._parts.append(_figure(tag, caption))

    def audio(self, rel_path: str, caption: str | None = None) -> None:
        kind = "audio/flac" if rel_path.endswith(".flac") else "audio/wav" if rel_path.endswith(".wav") else ""
        typ = f' type="{kind}"' if kind else ""
        self._parts.append(_figure(f'<audio controls preload="metadata"><source src="{esc(rel_path)}"{typ}></audio>',
                                   caption))

    def raw(self, html_text: str) -> None:
        """Trusted markup (e.g. a <div class="grid"> wrapper built from this module's `esc`)."""
        self._parts.append(html_text)

    def render(self) -> str:
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(self.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(self._parts)
            + "\n</body>\n</html>\n"
        )

    def write(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "index.html"
        path.write_text(self.render(), encoding="utf-8")
        return path


def _figure(inner: str, caption: str | None) -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{inner}{cap}</figure>"
