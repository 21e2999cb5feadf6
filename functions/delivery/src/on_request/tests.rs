//! Unit tests of [`super`]: a render racing the deletion or re-upload of its source, on an
//! in-memory store whose PUT of the variant lets the "other side" act first.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use imgpipe_cloud::effects::{Condition, Get, Got, Listed, Object, ObjectHead, ObjectStore, Put};
use imgpipe_cloud::failure::Failure;
use imgpipe_core::metadata::{SourceInfo, Status};
use imgpipe_core::{Metadata, PresetSet};

use super::*;

const BUCKET: &str = "derivatives";
const DIR: &str = "derived/photo.jpg/";

/// What happens to the folder while the variant renders (just before its PUT lands).
#[derive(Clone, Copy)]
enum Meanwhile {
    Nothing,
    Deleted,
    Replaced,
}

/// (bucket, key) → (bytes, ETag).
type Objects = BTreeMap<(String, String), (Vec<u8>, String)>;

struct Store {
    objects: Mutex<Objects>,
    meanwhile: Meanwhile,
}

impl Store {
    fn new(meanwhile: Meanwhile) -> Self {
        let source = std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
            .join("../../tests/fixtures/images/Landscape_1.jpg");
        let store = Self {
            objects: Mutex::new(BTreeMap::new()),
            meanwhile,
        };
        store.insert("ingest", "photo.jpg", std::fs::read(source).unwrap(), "v1");
        store.insert(BUCKET, &format!("{DIR}metadata.json"), document("v1"), "m1");
        store
    }

    fn insert(&self, bucket: &str, key: &str, bytes: Vec<u8>, etag: &str) {
        let mut objects = self.objects.lock().unwrap();
        objects.insert((bucket.into(), key.into()), (bytes, etag.into()));
    }

    fn has(&self, key: &str) -> bool {
        let objects = self.objects.lock().unwrap();
        objects.contains_key(&(BUCKET.to_string(), key.to_string()))
    }
}

/// A done metadata.json of the source at ETag `etag`.
fn document(etag: &str) -> Vec<u8> {
    let mut metadata = Metadata::new(
        SourceInfo {
            bucket: "ingest".into(),
            key: "photo.jpg".into(),
            etag: Some(etag.into()),
            ..Default::default()
        },
        PresetSet::default_set().hash(),
    );
    metadata.status = Status::Done;
    serde_json::to_vec(&metadata).unwrap()
}

#[async_trait]
impl ObjectStore for Store {
    async fn get(&self, request: Get<'_>) -> Result<Got, Failure> {
        let objects = self.objects.lock().unwrap();
        Ok(
            match objects.get(&(request.bucket.to_string(), request.key.to_string())) {
                Some((bytes, etag)) => Got::Found(Object {
                    bytes: bytes.clone(),
                    etag: Some(etag.clone()),
                    version_id: None,
                    size: Some(bytes.len() as u64),
                    metadata: Default::default(),
                }),
                None => Got::Missing,
            },
        )
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, Failure> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .get(&(bucket.to_string(), key.to_string()))
            .map(|(bytes, etag)| ObjectHead {
                size: bytes.len() as u64,
                etag: Some(etag.clone()),
                metadata: Default::default(),
            }))
    }

    async fn put(&self, request: Put<'_>) -> Result<bool, Failure> {
        if request.key.ends_with(".webp") {
            // The deletion cascade or the re-upload listed the folder while this rendered.
            let metadata = format!("{DIR}metadata.json");
            match self.meanwhile {
                Meanwhile::Nothing => {}
                Meanwhile::Deleted => {
                    let mut objects = self.objects.lock().unwrap();
                    objects.remove(&(BUCKET.to_string(), metadata));
                }
                Meanwhile::Replaced => self.insert(BUCKET, &metadata, document("v2"), "m2"),
            }
        }
        let mut objects = self.objects.lock().unwrap();
        let at = (request.bucket.to_string(), request.key.to_string());
        if matches!(request.condition, Some(Condition::IfNoneMatch)) && objects.contains_key(&at) {
            return Ok(false);
        }
        objects.insert(at, (request.body, "new".into()));
        Ok(true)
    }

    async fn delete(&self, bucket: &str, keys: &[String]) -> Result<(), Failure> {
        let mut objects = self.objects.lock().unwrap();
        for key in keys {
            objects.remove(&(bucket.to_string(), key.clone()));
        }
        Ok(())
    }

    async fn list(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<Vec<Listed>, Failure> {
        unreachable!("a render lists nothing")
    }

    async fn tags(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<Option<Vec<(String, String)>>, Failure> {
        unreachable!("a render reads no tags")
    }

    async fn set_tags(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: &[(String, String)],
    ) -> Result<bool, Failure> {
        unreachable!("a render writes no tags")
    }
}

async fn render_card(meanwhile: Meanwhile) -> (Made, bool) {
    let presets = PresetSet::from_toml(
        "[[preset]]\nname='thumb'\nwidth=64\n\n[[preset]]\nname='card'\nwidth=120\nformat='webp'\non_request=true\n",
    )
    .unwrap();
    let on_request = OnRequest::new(
        "derived/".into(),
        presets,
        None,
        Limits::default(),
        Options::default(),
        "public".into(),
    );
    let variant = on_request
        .resolve(&format!("{DIR}card.webp"))
        .unwrap()
        .unwrap();
    let store = Store::new(meanwhile);
    let made = on_request.make(&store, BUCKET, &variant).await;
    (made, store.has(&variant.key))
}

#[tokio::test]
async fn a_render_whose_source_stays_is_kept() {
    let (made, kept) = render_card(Meanwhile::Nothing).await;
    assert!(matches!(made, Made::Rendered { bytes: Some(_), .. }));
    assert!(kept);
}

#[tokio::test]
async fn a_render_that_lands_after_its_source_was_deleted_removes_itself() {
    let (made, kept) = render_card(Meanwhile::Deleted).await;
    assert!(matches!(&made, Made::NotFound(why) if why.contains("deleted")));
    assert!(!kept, "a deleted image's variant stayed");
}

#[tokio::test]
async fn a_render_from_bytes_replaced_meanwhile_removes_itself() {
    let (made, kept) = render_card(Meanwhile::Replaced).await;
    assert!(matches!(&made, Made::Upstream(why) if why.contains("changed")));
    assert!(!kept, "a variant of the old picture stayed");
}
