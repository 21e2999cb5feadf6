//! Which S3 event wins: deliveries are at least once and unordered, so every event of a key is checked
//! against what was last recorded for that key before it acts.
//!
//! S3 gives each event of a key a `sequencer`: a hex string that grows with each PUT or DELETE of that
//! key. AWS's rule to compare two: right-pad the shorter with zeros, then compare as strings
//! ([`compare`]). Sequencers of different keys mean nothing to each other. imgpipe records the
//! sequencer of the event that made a key's outputs (`source.sequencer` in metadata.json), and of the
//! event that deleted them (the tombstone `deleted.json`), and then:
//!
//! - an event **older** than the recorded one is ignored: a late `ObjectCreated` does not resurrect a
//!   deleted image, a late `ObjectRemoved` does not delete a newer upload's outputs;
//! - an **equal** or newer one acts (equal is a redelivery, and every action is idempotent; LocalStack's
//!   sequencer is a constant, so there everything acts in arrival order);
//! - without sequencers on either side (events imgpipe sends itself: manifest items, backfills), the
//!   event acts.
//!
//! Versioned buckets: a delete marker (`ObjectRemoved:DeleteMarkerCreated`, or an unversioned
//! `ObjectRemoved:Delete`) removes the outputs; permanently deleting one version removes them only
//! when it is the version they were made from (`source.version_id`); deleting a non-current version
//! leaves them.

use std::cmp::Ordering;

/// What an S3 event says happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `ObjectCreated:*` (Put, Post, Copy, CompleteMultipartUpload), or a job imgpipe sent itself.
    Created,
    /// The key is gone for readers: an unversioned delete, a delete marker, or a lifecycle expiration.
    Removed,
    /// One version was permanently deleted (`ObjectRemoved:Delete` with a version id); other
    /// versions may remain.
    VersionDeleted,
    /// Anything else (restore, replication, tagging, ...): not imgpipe's business.
    Other,
}

impl Change {
    /// Classifies an S3 event name (with or without the `s3:` prefix) and its object version id.
    pub fn of(event_name: &str, version_id: Option<&str>) -> Self {
        let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
        if name.starts_with("ObjectCreated:") {
            return Change::Created;
        }
        match name {
            "ObjectRemoved:DeleteMarkerCreated" | "LifecycleExpiration:DeleteMarkerCreated" => {
                Change::Removed
            }
            "ObjectRemoved:Delete" | "LifecycleExpiration:Delete" => match version_id {
                // Unversioned buckets send no version id (or the literal "null" version).
                Some(v) if !v.is_empty() && v != "null" => Change::VersionDeleted,
                _ => Change::Removed,
            },
            _ => Change::Other,
        }
    }
}

/// What was last recorded for a key in the output bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded<'a> {
    /// No metadata.json and no tombstone.
    Nothing,
    /// A metadata.json (done or failed) from the event with this sequencer, made from this version.
    Outputs {
        /// Sequencer of the event that made them, when it had one.
        sequencer: Option<&'a str>,
        /// Version id of the source they were made from, in a versioned bucket.
        version_id: Option<&'a str>,
    },
    /// A tombstone: the outputs were deleted by the event with this sequencer.
    Deleted {
        /// Sequencer of the removal, when it had one.
        sequencer: Option<&'a str>,
    },
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Make (or confirm) the outputs.
    Process,
    /// Delete the outputs and leave a tombstone.
    Delete,
    /// Do nothing; the reason is logged.
    Ignore(String),
}

/// Compares two sequencers of one key by AWS's rule: the shorter right-padded with `0`, then as
/// strings (case-insensitively: they are hex).
pub fn compare(a: &str, b: &str) -> Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0<width$}", s.to_ascii_uppercase());
    pad(a).cmp(&pad(b))
}

/// True when `event` is strictly older than `recorded` (both known).
fn older(event: Option<&str>, recorded: Option<&str>) -> bool {
    matches!((event, recorded), (Some(e), Some(r)) if compare(e, r) == Ordering::Less)
}

/// Decides what an event of `change` with `sequencer` (and `version_id`) does, given `recorded`.
pub fn decide(
    change: Change,
    sequencer: Option<&str>,
    version_id: Option<&str>,
    recorded: Recorded<'_>,
) -> Decision {
    let recorded_sequencer = match recorded {
        Recorded::Nothing => None,
        Recorded::Outputs { sequencer, .. } | Recorded::Deleted { sequencer } => sequencer,
    };
    if older(sequencer, recorded_sequencer) {
        let what = match recorded {
            Recorded::Deleted { .. } => "the deletion",
            _ => "the upload",
        };
        return Decision::Ignore(format!(
            "event sequencer {} is older than {what} recorded ({})",
            sequencer.unwrap_or_default(),
            recorded_sequencer.unwrap_or_default()
        ));
    }
    match change {
        Change::Created => Decision::Process,
        Change::Removed => Decision::Delete,
        Change::VersionDeleted => match recorded {
            Recorded::Outputs {
                version_id: Some(made_from),
                ..
            } if Some(made_from) == version_id => Decision::Delete,
            Recorded::Outputs { .. } => Decision::Ignore(format!(
                "version {} is not the one the outputs were made from; a non-current version's deletion leaves them",
                version_id.unwrap_or_default()
            )),
            Recorded::Nothing | Recorded::Deleted { .. } => {
                Decision::Ignore("a version was deleted, and there are no outputs".into())
            }
        },
        Change::Other => Decision::Ignore("not an object creation or removal".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "0055AED6DCD90281E5";
    const NEW: &str = "0055AED6DCD90281E6";
    /// Shorter, but larger once padded: 0055AED6DCD9028200 > 0055AED6DCD90281E6.
    const SHORT_NEWER: &str = "0055AED6DCD90282";

    fn outputs(sequencer: Option<&str>) -> Recorded<'_> {
        Recorded::Outputs {
            sequencer,
            version_id: None,
        }
    }

    #[test]
    fn sequencers_compare_padded_with_zeros() {
        assert_eq!(compare(OLD, NEW), Ordering::Less);
        assert_eq!(compare(NEW, OLD), Ordering::Greater);
        assert_eq!(compare(OLD, OLD), Ordering::Equal);
        assert_eq!(compare(SHORT_NEWER, NEW), Ordering::Greater);
        // Padding makes a prefix equal to its zero-extended self, and lower case equal to upper.
        assert_eq!(compare("0055AE", "0055AE00"), Ordering::Equal);
        assert_eq!(compare("00ab", "00AB"), Ordering::Equal);
        // A plain string comparison would get this one wrong ("1" > "09" but 10 > 09).
        assert_eq!(compare("1", "09"), Ordering::Greater);
        assert_eq!(compare("09", "1"), Ordering::Less);
    }

    #[test]
    fn created_then_removed_in_order_deletes() {
        let decision = decide(Change::Removed, Some(NEW), None, outputs(Some(OLD)));
        assert_eq!(decision, Decision::Delete);
    }

    #[test]
    fn a_late_removal_does_not_delete_a_newer_upload() {
        let decision = decide(Change::Removed, Some(OLD), None, outputs(Some(NEW)));
        assert!(
            matches!(decision, Decision::Ignore(ref why) if why.contains("older than the upload")),
            "{decision:?}"
        );
        // A shorter sequencer that pads to less is older too.
        let decision = decide(
            Change::Removed,
            Some("0055AED6DCD9"),
            None,
            outputs(Some(NEW)),
        );
        assert!(matches!(decision, Decision::Ignore(_)), "{decision:?}");
    }

    #[test]
    fn removed_then_created_in_order_processes_again() {
        let decision = decide(
            Change::Created,
            Some(NEW),
            None,
            Recorded::Deleted {
                sequencer: Some(OLD),
            },
        );
        assert_eq!(decision, Decision::Process);
        let decision = decide(
            Change::Created,
            Some(SHORT_NEWER),
            None,
            Recorded::Deleted {
                sequencer: Some(NEW),
            },
        );
        assert_eq!(decision, Decision::Process);
    }

    #[test]
    fn a_late_creation_does_not_resurrect_a_deleted_image() {
        let decision = decide(
            Change::Created,
            Some(OLD),
            None,
            Recorded::Deleted {
                sequencer: Some(NEW),
            },
        );
        assert!(
            matches!(decision, Decision::Ignore(ref why) if why.contains("older than the deletion")),
            "{decision:?}"
        );
    }

    #[test]
    fn a_late_creation_does_not_replace_newer_outputs() {
        let decision = decide(Change::Created, Some(OLD), None, outputs(Some(NEW)));
        assert!(matches!(decision, Decision::Ignore(_)), "{decision:?}");
    }

    #[test]
    fn equal_sequencers_act_redeliveries_are_idempotent_and_localstack_works() {
        assert_eq!(
            decide(Change::Created, Some(OLD), None, outputs(Some(OLD))),
            Decision::Process
        );
        assert_eq!(
            decide(
                Change::Removed,
                Some(OLD),
                None,
                Recorded::Deleted {
                    sequencer: Some(OLD)
                }
            ),
            Decision::Delete
        );
        assert_eq!(
            decide(
                Change::Created,
                Some(OLD),
                None,
                Recorded::Deleted {
                    sequencer: Some(OLD)
                }
            ),
            Decision::Process
        );
        assert_eq!(
            decide(Change::Removed, Some(OLD), None, outputs(Some(OLD))),
            Decision::Delete
        );
    }

    #[test]
    fn without_sequencers_events_act() {
        assert_eq!(
            decide(Change::Created, None, None, outputs(Some(NEW))),
            Decision::Process
        );
        assert_eq!(
            decide(Change::Created, Some(OLD), None, outputs(None)),
            Decision::Process
        );
        assert_eq!(
            decide(Change::Removed, Some(OLD), None, Recorded::Nothing),
            Decision::Delete
        );
        assert_eq!(
            decide(Change::Created, Some(OLD), None, Recorded::Nothing),
            Decision::Process
        );
    }

    #[test]
    fn versioned_buckets_delete_markers_remove_non_current_version_deletes_do_not() {
        assert_eq!(
            Change::of("ObjectRemoved:DeleteMarkerCreated", Some("v2")),
            Change::Removed
        );
        assert_eq!(
            Change::of("ObjectRemoved:Delete", Some("v1")),
            Change::VersionDeleted
        );
        assert_eq!(Change::of("ObjectRemoved:Delete", None), Change::Removed);
        assert_eq!(
            Change::of("ObjectRemoved:Delete", Some("null")),
            Change::Removed
        );
        let made_from_v2 = Recorded::Outputs {
            sequencer: Some(OLD),
            version_id: Some("v2"),
        };
        // The delete marker hides every version: outputs go.
        assert_eq!(
            decide(Change::Removed, Some(NEW), Some("m1"), made_from_v2),
            Decision::Delete
        );
        // Deleting v1 (not current, not what the outputs show): outputs stay.
        let decision = decide(Change::VersionDeleted, Some(NEW), Some("v1"), made_from_v2);
        assert!(
            matches!(decision, Decision::Ignore(ref why) if why.contains("non-current")),
            "{decision:?}"
        );
        // Deleting v2 itself: its outputs go.
        assert_eq!(
            decide(Change::VersionDeleted, Some(NEW), Some("v2"), made_from_v2),
            Decision::Delete
        );
        // Outputs made without a known version: a version deletion cannot be matched, outputs stay.
        assert!(matches!(
            decide(
                Change::VersionDeleted,
                Some(NEW),
                Some("v2"),
                outputs(Some(OLD))
            ),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            decide(
                Change::VersionDeleted,
                Some(NEW),
                Some("v2"),
                Recorded::Nothing
            ),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn event_names_are_classified() {
        assert_eq!(Change::of("ObjectCreated:Put", None), Change::Created);
        assert_eq!(
            Change::of("s3:ObjectCreated:CompleteMultipartUpload", None),
            Change::Created
        );
        assert_eq!(
            Change::of("LifecycleExpiration:Delete", None),
            Change::Removed
        );
        assert_eq!(
            Change::of("LifecycleExpiration:DeleteMarkerCreated", Some("m")),
            Change::Removed
        );
        assert_eq!(Change::of("ObjectRestore:Completed", None), Change::Other);
        assert_eq!(
            decide(Change::Other, None, None, Recorded::Nothing),
            Decision::Ignore("not an object creation or removal".into())
        );
    }
}
