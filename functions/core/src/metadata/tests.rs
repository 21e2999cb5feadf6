//! Unit tests of [`super`].

use super::*;

/// A document as the pipeline writes it for a phone photo (the values of
/// tests/fixtures/images/camera_iphone6_gps-altitude_8mp.jpg), failed on the service side.
fn phone_photo() -> Metadata {
    let mut m = Metadata::new(
        SourceInfo {
            bucket: "acme-ingest".into(),
            key: "uploads/01J/IMG_0001.jpg".into(),
            etag: Some("9b2cf535f27731c974343645a3985328".into()),
            sha256: Some("ab".repeat(32)),
            bytes: Some(2_000_000),
            format: Some("jpeg".into()),
            width: Some(3264),
            height: Some(2448),
            sequencer: Some("0062E99A88DC407460".into()),
            version_id: Some("3HL4kqtJlcpXroDTDmJ".into()),
            ..SourceInfo::default()
        },
        "0123456789abcdef",
    );
    m.exif = Some(CameraInfo {
        make: Some("Apple".into()),
        model: Some("iPhone 6".into()),
        date_taken: Some("2015-07-04T18:04:05+02:00".into()),
        software: Some("8.4".into()),
        copyright: Some("Jane Roe".into()),
        ..CameraInfo::default()
    });
    m.gps = Some(GpsPosition {
        latitude: 40.446972,
        longitude: -3.724753,
        altitude_m: Some(657.0),
    });
    m.timings_ms.total = 812.0;
    m
}

#[test]
fn the_public_view_has_no_personal_or_infrastructure_field() {
    let mut m = phone_photo();
    m.fail(
        "s3_get",
        "GetObject s3://acme-ingest/k: AccessDenied by arn:aws:iam::123456789012:role/x",
        true,
    );
    let public = serde_json::to_string(&m.public_view()).unwrap();
    for secret in [
        "40.44",
        "-3.72",
        "657",
        "latitude",
        "2015-07-04",
        "Jane Roe",
        "8.4",
        "acme-ingest",
        "abababab",
        "9b2cf535",
        "0062E99A",
        "3HL4kq",
        "123456789012",
        "AccessDenied",
        "812",
    ] {
        assert!(
            !public.contains(secret),
            "{secret} is in the public view: {public}"
        );
    }
    // What describes the image stays.
    for kept in [
        "Apple",
        "iPhone 6",
        "3264",
        "IMG_0001.jpg",
        "s3_get",
        "\"retryable\":true",
    ] {
        assert!(public.contains(kept), "{kept} went missing: {public}");
    }
    let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let value = serde_json::to_value(m.public_view()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "the public view breaks the schema: {errors:?}"
    );
}

#[test]
fn a_files_own_failure_keeps_its_explanation() {
    let mut m = phone_photo();
    m.fail("corrupt", "the JPEG ends after 1200 of 3264 rows", false);
    let error = m.public_view().error.unwrap();
    assert_eq!(error.message, "the JPEG ends after 1200 of 3264 rows");
    let mut m = phone_photo();
    m.fail("retries_exhausted", "SlowDown from s3://acme-ingest", true);
    assert_eq!(m.public_view().error.unwrap().message, GENERIC_FAILURE);
}

#[test]
fn camera_facts_with_only_personal_fields_become_absent() {
    let mut m = phone_photo();
    m.exif = Some(CameraInfo {
        date_taken: Some("2015-07-04T18:04:05".into()),
        ..CameraInfo::default()
    });
    assert_eq!(m.public_view().exif, None);
}
