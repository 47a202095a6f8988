//! Destinations: the named places one backup is written to in one pass
//! (issue 27's 3-2-1). Today's local directory (`local`) and `S3_*` bucket
//! (`s3`) come first, unchanged; every `--to URL` (`PGBAK_TO`) adds one
//! after them, in order. Each has a name (logs, alerts, metrics labels,
//! `list`, `check`) and what its URL overrides of the global settings
//! (retention, Object Lock; the storage class and SSE sit in its
//! [`crate::storage::s3::S3Settings`]).
//!
//! `settings::destinations` parses the URLs into [`DestinationPlace`]s;
//! [`super::Stores`] opens each once (one S3 client, one AWS configuration
//! load, per destination) and keeps them in order.

use crate::retention::Policy;
use crate::storage::object_lock::LockPolicy;

use super::{Place, Store};

/// The name of the local directory as a destination.
pub const LOCAL: &str = "local";
/// The name of the `S3_*` bucket as a destination.
pub const BUCKET: &str = "s3";

/// What a destination's URL overrides of the global settings. None: the
/// command's global setting applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// This destination's retention rules: the URL's rules over the global
    /// ones, rule by rule (a rule the URL leaves out is the global one).
    pub retention: Option<Policy>,
    /// The Object Lock put on this destination's uploads, when the URL says
    /// anything about it: `Some(None)` is `object-lock-days=0` (no lock here
    /// even when the global flags ask for one).
    pub object_lock: Option<Option<LockPolicy>>,
}

impl Overrides {
    /// The rules for this destination, given the command's global ones.
    pub fn retention<'a>(&'a self, global: &'a Policy) -> &'a Policy {
        self.retention.as_ref().unwrap_or(global)
    }

    /// The lock for this destination's uploads, given the global one.
    pub fn object_lock(&self, global: Option<LockPolicy>) -> Option<LockPolicy> {
        self.object_lock.unwrap_or(global)
    }
}

/// A destination as the settings describe it: opened by [`super::Stores`].
#[derive(Debug, Clone)]
pub struct DestinationPlace {
    /// `[a-z0-9_-]+`, unique among the run's destinations.
    pub name: String,
    pub place: Place,
    pub overrides: Overrides,
}

/// A destination opened: its name, its store and its overrides.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub store: Store,
    pub overrides: Overrides,
}

impl Destination {
    pub(super) fn open(place: &DestinationPlace) -> Destination {
        Destination {
            name: place.name.clone(),
            store: place.place.open(),
            overrides: place.overrides.clone(),
        }
    }
}
