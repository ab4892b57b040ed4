-- One row per enriched event (topic lumen.enriched), written by lumen-sink.
--
-- Conventions of the whole model (see sink/queries.md):
-- * Strings use '' for "absent": no valid site, URL, token, app or UTM value is
--   empty, so '' is unambiguous and avoids Nullable's extra null map.
-- * Nullable only for non-string values that can truly be missing: the
--   client clock, the share method of a pageview, a share's age.
-- * LowCardinality for strings with a few thousand distinct values at most;
--   Enum8 for closed sets, with the symbols of schemas/avro/*.avsc.
-- * Times are DateTime64(3, 'UTC') (Unix milliseconds in Avro).
--
-- Ordered for "per site, per time range, per channel" queries; partitioned by
-- day so that the TTL (set from --events-ttl-days at every start-up) drops
-- whole parts. The deduplication window makes a batch retried with the same
-- insert_deduplication_token a no-op. The constraints reject rows no upstream
-- should produce; the sink routes such rows to lumen.dlq.
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id UUID,
    site_id LowCardinality(String),
    kind Enum8('pageview' = 1, 'share' = 2),
    received_at DateTime64(3, 'UTC'),
    sent_at Nullable(DateTime64(3, 'UTC')),
    url String,
    referrer String,
    user_agent String,
    visitor_id String,
    minted_token String,
    landing_token String,
    webview LowCardinality(String),
    share_token String,
    share_method Nullable(Enum8('copy' = 1, 'button' = 2, 'native' = 3, 'address_bar' = 4)),
    share_target LowCardinality(String),
    parent_token String,
    channel Enum8('dark_social' = 1, 'social' = 2, 'search' = 3, 'ai' = 4, 'email' = 5, 'paid' = 6, 'referral' = 7, 'internal' = 8, 'direct' = 9),
    channel_source LowCardinality(String),
    attribution Enum8('token' = 1, 'in_app' = 2, 'referrer' = 3, 'campaign' = 4, 'heuristic' = 5, 'none' = 6),
    confidence Enum8('certain' = 1, 'probable' = 2),
    rule LowCardinality(String),
    browser_family LowCardinality(String),
    browser_major LowCardinality(String),
    os_family LowCardinality(String),
    device_type Enum8('desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    in_app LowCardinality(String),
    is_bot Bool,
    bot_name LowCardinality(String),
    preview_app LowCardinality(String),
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    token_status Enum8('absent' = 1, 'explicit' = 2, 'address_bar' = 3, 'invalid' = 4),
    share_age_seconds Nullable(Int64),
    landing_share_method Nullable(Enum8('copy' = 1, 'button' = 2, 'native' = 3, 'address_bar' = 4)),
    landing_share_target LowCardinality(String),
    landing_sharer_visitor_id String,
    landing_parent_token String,
    -- Where a visit landed, for "top articles" without parsing URLs at query time.
    page_path String MATERIALIZED path(url),
    CONSTRAINT site_id_present CHECK site_id != '',
    CONSTRAINT received_at_plausible CHECK received_at >= toDateTime64('2020-01-01 00:00:00', 3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (site_id, toStartOfHour(received_at), channel, received_at)
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
