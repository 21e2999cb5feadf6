"""The signing examples in docs/examples produce the signature `imgpipe_core::variant` checks.

The expected segment is the Rust unit test's vector (functions/core/src/variant/tests.rs,
`the_signature_is_hmac_sha256_truncated_to_16_bytes_base64url`), so the docs, the Python and the JS
examples and the gateway cannot drift apart.
"""

import pathlib
import subprocess
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPECTED = "_w640-cover-q70.8PkP8Bf9nLa8Nz5BJw4Chg.webp"


class SigningExamples(unittest.TestCase):
    def run_example(self, *command):
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def test_python_example_signs_like_the_gateway(self):
        self.assertEqual(self.run_example("python3", "docs/examples/sign_variant.py"), EXPECTED)

    def test_js_example_signs_like_the_gateway(self):
        self.assertEqual(self.run_example("node", "docs/examples/sign_variant.mjs"), EXPECTED)

    def test_the_rust_test_pins_the_same_vector(self):
        tests = (ROOT / "functions/core/src/variant/tests.rs").read_text()
        self.assertIn(EXPECTED.split(".")[1], tests)


if __name__ == "__main__":
    unittest.main()
