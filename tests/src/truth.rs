//! What the generator sent, counted the way ClickHouse must count it: the
//! ground truth the end-to-end tests compare against.

use std::collections::BTreeMap;

use serde::Serialize;

/// Expected counts after every beacon has been delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Truth {
    /// Every event sent (pageviews of readers and bots, shares).
    pub events: u64,
    /// Pageviews that are visits (not bots), by channel name.
    pub visits_by_channel: BTreeMap<String, u64>,
    /// Share events by method name.
    pub shares_by_method: BTreeMap<String, u64>,
    /// Pageviews by link-preview fetchers.
    pub preview_fetches: u64,
    /// Pageviews by other bots (crawlers).
    pub crawler_hits: u64,
    /// Visits whose URL carried a share token.
    pub tokened_visits: u64,
    /// Visits by arrival row, for reports.
    pub visits_by_arrival: BTreeMap<String, u64>,
}

impl Truth {
    /// Dark-social visits per public-social visit, as `lumen.share_ratio` has it.
    pub fn dark_public_ratio(&self) -> Option<f64> {
        let dark = self.visits("dark_social");
        let public = self.visits("social");
        (public > 0).then(|| dark as f64 / public as f64)
    }

    /// Visits counted in `channel`.
    pub fn visits(&self, channel: &str) -> u64 {
        self.visits_by_channel.get(channel).copied().unwrap_or(0)
    }

    /// All visits.
    pub fn total_visits(&self) -> u64 {
        self.visits_by_channel.values().sum()
    }

    /// Adds the counts of traffic sent alongside (e.g. latency probes).
    pub fn merge(&mut self, other: &Truth) {
        fn add(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
            for (key, value) in from {
                *into.entry(key.clone()).or_default() += value;
            }
        }
        self.events += other.events;
        add(&mut self.visits_by_channel, &other.visits_by_channel);
        add(&mut self.shares_by_method, &other.shares_by_method);
        add(&mut self.visits_by_arrival, &other.visits_by_arrival);
        self.preview_fetches += other.preview_fetches;
        self.crawler_hits += other.crawler_hits;
        self.tokened_visits += other.tokened_visits;
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let total = self.total_visits().max(1) as f64;
        out.push_str(&format!(
            "{:<14} {:>8} {:>7}\n",
            "channel", "visits", "share"
        ));
        for (channel, visits) in &self.visits_by_channel {
            let percent = 100.0 * *visits as f64 / total;
            out.push_str(&format!("{channel:<14} {visits:>8} {percent:>6.1}%\n"));
        }
        let ratio = self
            .dark_public_ratio()
            .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"));
        out.push_str(&format!(
            "events {} | shares {:?} | preview fetches {} | crawler hits {} | tokened visits {} | dark/public ratio {ratio}\n",
            self.events, self.shares_by_method, self.preview_fetches, self.crawler_hits, self.tokened_visits
        ));
        out
    }
}
