"""Jinja2 rendering: one Environment per output format (HTML autoescaped, Markdown raw, LaTeX with \\VAR{} delimiters).

Templates hold layout only; every number arrives in the context from a file the pipeline wrote and is formatted by
`cell_text`. HTML embeds figures as base64 data URIs (self-contained); Markdown links them from `figures/`.
"""
from __future__ import annotations

import base64
import math
import re
import shutil
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..io import write_text

TEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$", "×": r"$\times$", "—": "---", "–": "--",
                "§": r"\S{}", "·": r"$\cdot$", "≈": r"$\approx$", "≤": r"$\leq$", "≥": r"$\geq$", "→": r"$\to$",
                "√": r"$\surd$", "‖": r"$\|$", "∞": r"$\infty$", "²": r"$^2$", "µ": r"$\mu$"}
# Greek letters (σ, λ, ε, ...) in captions and cells: math-mode commands, so pdflatex needs no Unicode set-up.
GREEK = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
         "phi chi psi omega").split()
TEX_SPECIALS |= {chr(0x3B1 + i + (i > 16)): rf"$\{n}$" for i, n in enumerate(GREEK) if n != "omicron"}
TEX_SPECIALS |= {chr(0x391 + i + (i > 16)): rf"$\{n.capitalize()}$" for i, n in enumerate(GREEK)
                 if n in ("gamma", "delta", "theta", "lambda", "xi", "pi", "sigma", "phi", "psi", "omega")}
TEX_SPECIALS |= {"−": "$-$", "′": "'", "“": "``", "”": "''", "‘": "`", "’": "'", "…": r"\ldots{}", "∈": r"$\in$",
                 "≠": r"$\neq$", "∝": r"$\propto$", "∑": r"$\sum$", "∫": r"$\int$", "∂": r"$\partial$",
                 "∇": r"$\nabla$", "⊤": r"$^\top$", "ᵀ": r"$^\top$", "½": r"$\frac12$", "³": r"$^3$", "¹": r"$^1$",
                 "⁻": r"$^-$", "₀": r"$_0$", "₁": r"$_1$", "₂": r"$_2$", "ₜ": r"$_t$", "✓": "yes", "✗": "no"}
TEX_RE = re.compile("|".join(re.escape(k) for k in sorted(TEX_SPECIALS, key=len, reverse=True)))


def tex_ascii(ch: str) -> str:
    """Last resort for characters pdflatex's utf8 input cannot typeset: their ASCII decomposition, else '?'."""
    import unicodedata

    return unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"


def tex_escape(text) -> str:
    """Escape LaTeX specials; Markdown `code` spans become \\texttt{...}, **bold** markers are dropped."""
    text = TEX_RE.sub(lambda m: TEX_SPECIALS[m.group()], str(text).replace("**", ""))
    text = re.sub(r"[^\x00-\xff]", lambda m: tex_ascii(m.group()), text)  # Latin-1 is fine with inputenc utf8
    return re.sub(r"`([^`]*)`", r"\\texttt{\1}", text)


def number_text(x) -> str:
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    if isinstance(x, float):  # as written when short (published 110.03 stays 110.03), else 4 significant digits
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return str(int(x)) if x.is_integer() and abs(x) < 1e7 else (repr(x) if len(repr(x)) <= 7 else f"{x:.4g}")
    return str(x)


def cell_text(value, target: str = "html") -> str:
    """A table cell as text: None -> dash, {mean, std} -> "m ± s", floats to 4 significant digits."""
    if value is None:
        return {"tex": "--"}.get(target, "–")
    if isinstance(value, dict) and "mean" in value:
        std = value.get("std")
        text = number_text(value["mean"]) + ("" if std is None else f" ± {number_text(std)}")
    else:
        text = number_text(value)
    flag = value.get("flag") if isinstance(value, dict) else None
    bold = isinstance(value, dict) and value.get("bold")
    text += f" {flag}" if flag else ""
    if target == "tex":
        return rf"\textbf{{{tex_escape(text)}}}" if bold else tex_escape(text)
    if target == "md":
        text = text.replace("|", r"\|").replace("\n", " ")
        return f"**{text}**" if bold else text
    return text


def html_cell(value) -> Markup:
    """An HTML table cell: escaped text, <b> for the best value of a column."""
    text = Markup.escape(cell_text(value, "html"))
    return Markup(f"<b>{text}</b>") if isinstance(value, dict) and value.get("bold") else text


def markdown_html(text: str, inline: bool = False) -> Markup:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return Markup(md.renderInline(text) if inline else md.render(text))


def column_spec(table: dict) -> str:
    def numeric(j):
        return all(r[j] is None or isinstance(r[j], (int, float, dict)) for r in table["rows"])
    return "".join("r" if table["rows"] and numeric(j) else "l" for j in range(len(table["columns"])))


def environment(kind: str) -> Environment:
    common = dict(loader=PackageLoader("diffrepro.reports", "templates"), undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    if kind == "tex":
        env = Environment(**common, autoescape=False, block_start_string=r"\BLOCK{", block_end_string="}",
                          variable_start_string=r"\VAR{", variable_end_string="}", comment_start_string=r"\#{",
                          comment_end_string="}", line_comment_prefix="%#")
        env.filters["tex"] = tex_escape
    else:
        env = Environment(**common, autoescape=(kind == "html"))
        env.filters["markdown"] = markdown_html
        env.filters["inline"] = lambda text: markdown_html(text, inline=True)
    env.filters["cell"] = html_cell if kind == "html" else (lambda v: cell_text(v, kind))
    env.globals["column_spec"] = column_spec
    return env


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def place_figures(sections: list[dict], out_dir: Path) -> set[Path]:
    """Copy each section figure to `out_dir/figures/<section>__<name>` (for Markdown) and attach its data URI (for
    HTML); a missing figure becomes a note in its section. Returns the figure files written."""
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = set()
    for s in sections:
        placed = []
        for fig in s["figures"]:
            src = Path(fig["path"])
            if not src.exists():
                s["notes"].append(f"Figure {src} was not produced.")
                continue
            dest = fig_dir / f"{slug(s['id'])}__{slug(src.name)}"
            if src.resolve() != dest.resolve():
                shutil.copyfile(src, dest)
            written.add(dest.resolve())
            mime = "image/svg+xml" if src.suffix == ".svg" else f"image/{src.suffix.lstrip('.').lower() or 'png'}"
            placed.append({**fig, "file": f"figures/{dest.name}",
                           "data_uri": f"data:{mime};base64,{base64.b64encode(dest.read_bytes()).decode()}"})
        s["figures"] = placed
    return written


def render_report(context: dict, out_dir: Path) -> list[Path]:
    """Write index.html, report.md and tables/<section>__<table>.tex; remove stale figures and fragments."""
    out_dir = Path(out_dir)
    figures = place_figures(context["sections"], out_dir)
    html = environment("html").get_template("report.html.j2").render(**context)
    md = environment("md").get_template("report.md.j2").render(**context)
    outputs = [write_text(out_dir / "index.html", html), write_text(out_dir / "report.md", md)]
    tex = environment("tex").get_template("table.tex.j2")
    by_id = {s["id"]: s for s in context["sections"]}
    placed = [(s, t) for s in context["sections"] for t in s["tables"]]
    placed += [(by_id[t["section"]], t) for t in context.get("appendix", [])]  # long tables moved to the appendix
    for s, t in placed:
        dest = out_dir / "tables" / f"{slug(s['id'])}__{slug(t['id'])}.tex"
        outputs.append(write_text(dest, tex.render(section=s, table=t, label=f"tab:{slug(s['id'])}:{slug(t['id'])}")))
    keep = figures | {p.resolve() for p in outputs}
    for folder in (out_dir / "figures", out_dir / "tables"):
        for stale in folder.glob("*"):
            if stale.is_file() and stale.resolve() not in keep:
                stale.unlink()
    return outputs + sorted(figures)


def render_compare(context: dict, out_dir: Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    for fig in context["figures"]:
        src = Path(fig["path"])
        fig["file"] = src.relative_to(out_dir).as_posix() if src.is_relative_to(out_dir) else str(src)
        fig["data_uri"] = f"data:image/png;base64,{base64.b64encode(src.read_bytes()).decode()}"
    html = environment("html").get_template("compare.html.j2").render(**context)
    md = environment("md").get_template("compare.md.j2").render(**context)
    return [write_text(out_dir / f"{stem}.html", html), write_text(out_dir / f"{stem}.md", md)]
