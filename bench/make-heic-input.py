#!/usr/bin/env python3
"""Makes the 12 MP HEIC benchmark input the way an iPhone stores a photo: a 4032x3024 grid of 512x512
x265 tiles sharing one hvcC, with an Exif item (tests/fixtures/craft/craft.py's writer; x265 through
pillow-heif, which `make bench` installs in the project venv).

    python make-heic-input.py <source.jpg> <out.heic>
"""
import importlib.util
import pathlib
import sys

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("craft", ROOT / "tests" / "fixtures" / "craft" / "craft.py")
craft = importlib.util.module_from_spec(spec)
spec.loader.exec_module(craft)

source, out = sys.argv[1:3]
photo = Image.open(source).convert("RGB").resize((4032, 3024), Image.LANCZOS)
pathlib.Path(out).write_bytes(craft.iphone_style_heic(photo, craft.exif_bytes(), tile=512, rotate_ccw=0, quality=85))
