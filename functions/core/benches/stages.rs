//! Per-stage micro-benchmarks, so a regression points at its stage: `cargo bench -p imgpipe-core`
//! (or `make bench-stages`). Inputs are repository fixtures; sizes are those the default presets meet
//! on a 12 MP photo (4032×3024 decoded at 1/2 → 2016×1512, outputs up to 1200×900).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use imgpipe_core::colour::{self, Profile};
use imgpipe_core::plan::CropFraction;
use imgpipe_core::{Engine, PresetSet, decode, encode, orient, probe};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(
            &std::env::var_os("CARGO_MANIFEST_DIR")
                .expect("cargo sets CARGO_MANIFEST_DIR for benches"),
        )
        .join("../../tests/fixtures/images")
        .join(name),
    )
    .unwrap()
}

fn preset(toml: &str) -> imgpipe_core::Preset {
    PresetSet::from_toml(toml).unwrap().presets()[0].clone()
}

fn stages(c: &mut Criterion) {
    let photo = fixture("large_olympus-e-p3_12mp.jpg");
    let header = probe::probe(&photo).unwrap();
    c.bench_function("probe/jpeg_12mp", |b| {
        b.iter(|| probe::probe(black_box(&photo)).unwrap())
    });
    c.bench_function("exif/jpeg_12mp", |b| {
        b.iter(|| imgpipe_core::exif::read(black_box(&photo)))
    });
    c.bench_function("sha256/jpeg_12mp", |b| {
        use sha2::Digest;
        b.iter(|| sha2::Sha256::digest(black_box(&photo)))
    });
    for denominator in [1, 2, 4, 8] {
        c.bench_function(&format!("decode/jpeg_12mp_1_{denominator}"), |b| {
            b.iter(|| decode::decode(&photo, &header, denominator, None, 1 << 30).unwrap())
        });
    }
    let png = fixture("png_rgba_blackbug_2048x1536.png");
    let png_header = probe::probe(&png).unwrap();
    c.bench_function("decode/png_rgba_3mp", |b| {
        b.iter(|| decode::decode(&png, &png_header, 1, None, 1 << 30).unwrap())
    });

    let half = decode::decode(&photo, &header, 2, None, 1 << 30).unwrap();
    c.bench_function("orient/6_2016x1512", |b| {
        b.iter(|| orient::orient(half.clone(), 6))
    });
    // The clone alone, to subtract from the orient figure above.
    c.bench_function("orient/1_clone_only_2016x1512", |b| {
        b.iter(|| orient::orient(half.clone(), 1))
    });

    let prophoto_file = fixture("crafted_icc_prophoto_16bit_rgba.png");
    let prophoto =
        Profile::parse(&probe::probe(&prophoto_file).unwrap().icc_profile.unwrap()).unwrap();
    c.bench_function("colour/prophoto_to_srgb_2016x1512", |b| {
        b.iter(|| colour::rgb_to_srgb(half.clone(), Some(&prophoto)))
    });
    let cmyk_file = fixture("crafted_cmyk_fogra39-icc_adobe.jpg");
    let cmyk_header = probe::probe(&cmyk_file).unwrap();
    let cmyk_profile = Profile::parse(cmyk_header.icc_profile.as_deref().unwrap()).unwrap();
    c.bench_function("decode/cmyk_with_profile_640x480", |b| {
        b.iter(|| {
            decode::decode(&cmyk_file, &cmyk_header, 1, Some(&cmyk_profile), 1 << 30).unwrap()
        })
    });

    let mut engine = Engine::default();
    for (name, w, h) in [
        ("1200x900", 1200, 900),
        ("800x600", 800, 600),
        ("32x24", 32, 24),
    ] {
        c.bench_function(&format!("resize/lanczos3_2016x1512_to_{name}"), |b| {
            b.iter(|| engine.resize(&half, CropFraction::FULL, w, h).unwrap())
        });
    }
    let preview = engine.resize(&half, CropFraction::FULL, 1200, 900).unwrap();
    let encoders = [
        (
            "jpeg_q85_progressive",
            "format='jpeg'\nquality=85\nprogressive=true",
        ),
        ("jpeg_q85_baseline", "format='jpeg'\nquality=85"),
        ("jpeg_q30", "format='jpeg'\nquality=30"),
        ("webp_q80_m4", "format='webp'\nquality=80\nwebp_method=4"),
        ("webp_q80_m2", "format='webp'\nquality=80\nwebp_method=2"),
        ("png", "format='png'"),
    ];
    for (name, settings) in encoders {
        let p = preset(&format!("[[preset]]\nname='x'\nwidth=1200\n{settings}"));
        c.bench_function(&format!("encode/{name}_1200x900"), |b| {
            b.iter(|| encode::encode(preview.clone(), &p, [255, 255, 255]).unwrap())
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = stages
}
criterion_main!(benches);
