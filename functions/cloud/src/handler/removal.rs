//! A removal: the source's outputs deleted and its tombstone written, so a late creation older than
//! the removal is ignored (see `crate::deletion`, `crate::ordering`).

use super::*;

impl Handler {
    pub(super) fn tombstone_key(&self, source_key: &str) -> String {
        format!(
            "{}{source_key}/{}",
            self.config.layout.prefix,
            deletion::TOMBSTONE
        )
    }

    /// The removal `record` won (see [`ordering`]): deletes every output of the key and writes the
    /// tombstone; a redelivery of the same removal keeps the tombstone it finds.
    pub(super) async fn delete_record(
        &self,
        record: &ObjectEvent,
        existing: Option<Metadata>,
        tombstone: Option<Tombstone>,
    ) -> Result<RecordDone, RecordError> {
        let config = &self.config;
        let dir = format!("{}{}/", config.layout.prefix, record.key);
        let tombstone_key = self.tombstone_key(&record.key);
        let listed = existing
            .iter()
            .flat_map(|m| m.derivatives.iter().map(|d| d.key.clone()))
            .collect::<Vec<_>>();
        let deleted = deletion::delete_outputs(
            &*self.s3,
            &config.output_bucket,
            &dir,
            listed,
            &tombstone_key,
        )
        .await?;
        let same_removal = tombstone.filter(|t| {
            t.sequencer == record.sequencer
                && t.version_id == record.version_id
                && deleted.is_empty()
        });
        let tombstone = match same_removal {
            Some(found) => found,
            None => {
                let tombstone = Tombstone {
                    schema: deletion::TOMBSTONE_SCHEMA.into(),
                    bucket: record.bucket.clone(),
                    key: record.key.clone(),
                    sequencer: record.sequencer.clone(),
                    version_id: record.version_id.clone(),
                    event_name: record.event_name.clone(),
                    deleted_at: self.now(),
                    deleted_keys: deleted,
                };
                store::put_tagging(
                    &*self.s3,
                    &config.output_bucket,
                    &tombstone_key,
                    serde_json::to_vec_pretty(&tombstone).expect("tombstone serialises"),
                    "application/json",
                    &config.metadata_cache_control,
                    deletion::TOMBSTONE_TAGGING,
                )
                .await?;
                tombstone
            }
        };
        tracing::info!(key = %record.key, event = %record.event_name, deleted = tombstone.deleted_keys.len(), "source removed; its outputs deleted");
        Ok(RecordDone::Deleted(Box::new(tombstone)))
    }
}
