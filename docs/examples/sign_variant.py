import base64, hashlib, hmac

def signed_segment(key: bytes, dir: str, options: str, ext: str) -> str:
    """Signs a parametric variant of the source stored at `dir` ("derived/<key>/")."""
    canonical = f"_{options}.{ext}"                # e.g. "_w640-cover-q70.webp"
    tag = hmac.new(key, (dir + canonical).encode(), hashlib.sha256).digest()[:16]
    sig = base64.urlsafe_b64encode(tag).rstrip(b"=").decode()  # 22 characters
    return f"_{options}.{sig}.{ext}"

print(signed_segment(b"k" * 32, "derived/photos/cat.jpg/", "w640-cover-q70", "webp"))
