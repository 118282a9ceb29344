//! The native histograms of one latency family, one per series, found by a typed
//! key when recording and by the exported labels when `/metrics` is encoded.
//!
//! The keys are the label values the family's instrument is recorded with, typed
//! (mostly `&'static str`), so finding a series costs a hash of a few words and a
//! read lock; [`SeriesKey::labels`] names them as the exporter does
//! (`db.system.name` → `db_system_name`), which the protobuf encoder uses to join
//! each series of the SDK's family with its native histogram.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use foldhash::fast::RandomState;
use prometheus::proto::Metric;

use super::native::{NativeHistogram, NativeSnapshot};
use super::protobuf::NativeSource;

/// The exported labels of a series: (name, value) sorted by name.
pub type Labels = Vec<(String, String)>;

/// The label values of one series of a latency family.
pub trait SeriesKey: Hash + Eq + Clone {
    /// The series' labels as the exporter writes them (in any order).
    fn labels(&self) -> Labels;
}

/// The labels of a series of the SDK's family, sorted by name.
pub fn labels_of(metric: &Metric) -> Labels {
    let mut labels: Labels = metric
        .get_label()
        .iter()
        .map(|pair| (pair.name().to_owned(), pair.value().to_owned()))
        .collect();
    labels.sort();
    labels
}

/// One family's native histograms, by series. Bounded as the family's series are
/// (routes by the router, database operations by the code, backend calls by the
/// configured backend and the status codes it answers).
#[derive(Debug)]
pub struct NativeFamily<K> {
    /// foldhash: the keys are Pulse's own label values, not client input.
    series: RwLock<HashMap<K, Arc<NativeHistogram>, RandomState>>,
}

impl<K> Default for NativeFamily<K> {
    fn default() -> Self {
        Self {
            series: RwLock::new(HashMap::default()),
        }
    }
}

impl<K: SeriesKey> NativeFamily<K> {
    /// The histogram of `key`, created on first use.
    pub fn series(&self, key: &K) -> Arc<NativeHistogram> {
        if let Some(found) = crate::sync::read(&self.series).get(key) {
            return Arc::clone(found);
        }
        let mut all = crate::sync::write(&self.series);
        Arc::clone(all.entry(key.clone()).or_default())
    }

    /// Counts one observation of `seconds` in the series `key`.
    pub fn record(&self, key: &K, seconds: f64) {
        if let Some(found) = crate::sync::read(&self.series).get(key) {
            found.record(seconds);
            return;
        }
        self.series(key).record(seconds);
    }

    /// Observations in all series (once per scrape).
    pub fn count(&self) -> u64 {
        crate::sync::read(&self.series)
            .values()
            .map(|histogram| histogram.count())
            .sum()
    }

    /// Every series' histogram by its sorted exported labels (once per scrape).
    pub fn by_labels(&self) -> HashMap<Labels, Arc<NativeHistogram>> {
        crate::sync::read(&self.series)
            .iter()
            .map(|(key, histogram)| {
                let mut labels = key.labels();
                labels.sort();
                (labels, Arc::clone(histogram))
            })
            .collect()
    }
}

/// The native histograms of every latency family, by family name and sorted
/// labels: built once per scrape, so the encoder finds each series by its labels.
#[derive(Debug, Default)]
pub struct NativeIndex {
    families: Vec<(&'static str, HashMap<Labels, Arc<NativeHistogram>>)>,
}

impl NativeIndex {
    /// Adds the series of the family exported as `name`.
    pub fn with<K: SeriesKey>(mut self, name: &'static str, family: &NativeFamily<K>) -> Self {
        self.families.push((name, family.by_labels()));
        self
    }
}

impl NativeSource for NativeIndex {
    fn native(&self, family: &str, series: &Metric) -> Option<NativeSnapshot> {
        let (_, by_labels) = self.families.iter().find(|(name, _)| *name == family)?;
        by_labels.get(&labels_of(series)).map(|h| h.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct Route(&'static str);

    impl SeriesKey for Route {
        fn labels(&self) -> Labels {
            vec![
                ("route".into(), self.0.into()),
                ("method".into(), "GET".into()),
            ]
        }
    }

    #[test]
    fn series_are_kept_apart_and_found_by_their_sorted_labels() {
        let family = NativeFamily::<Route>::default();
        family.record(&Route("/a"), 1.0);
        family.record(&Route("/a"), 2.0);
        family.record(&Route("/b"), 1.0);
        let all = family.by_labels();
        let a = vec![
            ("method".to_owned(), "GET".to_owned()),
            ("route".to_owned(), "/a".to_owned()),
        ];
        assert_eq!(all.len(), 2);
        assert_eq!(all[&a].snapshot().count, 2);
        assert!(Arc::ptr_eq(&family.series(&Route("/a")), &all[&a]));
    }
}
