//! The log filter in force, replaceable at run time (`PUT /admin/runtime`, the
//! ConfigMap) without a lock on the logging path.
//!
//! `tracing_subscriber::reload` does the same behind an `RwLock` that every event
//! and span callsite check read-locks: a write to the lock's word, shared by every
//! worker thread, on each access line; at saturation on two cores that cache line
//! moving between the workers was a visible part of the access log's cost
//! (docs/performance.md; reload.rs itself notes the lock as a cost to profile).
//! Here the filter is read through [`ArcSwap`], whose reads write only a per-thread
//! slot, and a change swaps in the new filter and rebuilds tracing's callsite
//! interest, as `reload` does.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::subscriber::Interest;
use tracing::{Metadata, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};

/// A per-layer filter that is whichever [`EnvFilter`] was set last.
#[derive(Debug, Clone)]
pub struct SwappableFilter {
    current: Arc<ArcSwap<EnvFilter>>,
}

impl SwappableFilter {
    /// Filters with `filter` until [`SwappableFilter::set`] replaces it.
    pub fn new(filter: EnvFilter) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(filter)),
        }
    }

    /// Filters with `filter` from now on (every clone of this filter).
    pub fn set(&self, filter: EnvFilter) {
        self.current.store(Arc::new(filter));
        // Callsites cache whether they are enabled: ask them again, or a level the
        // old filter turned off would stay off.
        tracing::callsite::rebuild_interest_cache();
    }
}

impl<S> Filter<S> for SwappableFilter
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::enabled(&**self.current.load(), meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        Filter::<S>::callsite_enabled(&**self.current.load(), meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&**self.current.load())
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_new_span(&**self.current.load(), attrs, id, cx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        Filter::<S>::on_record(&**self.current.load(), id, values, cx);
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_enter(&**self.current.load(), id, cx);
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_exit(&**self.current.load(), id, cx);
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_close(&**self.current.load(), id, cx);
    }
}
