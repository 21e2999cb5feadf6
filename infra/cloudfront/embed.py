"""Copies infra/cloudfront/negotiate.js into infra/template.yaml's EdgeNegotiationFunction.FunctionCode.

    python3 infra/cloudfront/embed.py

infra/test_template.py fails while the two differ (CloudFront runs the embedded copy; node tests the file).
"""

from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent
START = "      FunctionCode: |\n"
INDENT = " " * 8


def main() -> None:
    template = (INFRA / "template.yaml").read_text()
    code = (INFRA / "cloudfront" / "negotiate.js").read_text()
    begin = template.index(START) + len(START)
    end = begin
    lines = template[begin:].split("\n")
    for line in lines:
        if line and not line.startswith(INDENT):
            break
        end += len(line) + 1
    embedded = "".join((INDENT + line if line.strip() else "\n") if line.endswith("\n") else INDENT + line
                       for line in code.splitlines(keepends=True))
    # A blank line keeps the YAML block apart from the next resource.
    (INFRA / "template.yaml").write_text(template[:begin] + embedded + "\n" + template[end:].lstrip("\n"))


if __name__ == "__main__":
    main()
