-- One row per enriched event (topic lumen.enriched). Ordered for "per site,
-- per time range, per channel" queries. The deduplication window makes a
-- batch retried with the same insert_deduplication_token a no-op.
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id UUID,
    site_id LowCardinality(String),
    kind Enum8('pageview' = 1, 'share' = 2),
    received_at DateTime64(3, 'UTC'),
    sent_at Nullable(DateTime64(3, 'UTC')),
    url String,
    referrer Nullable(String),
    user_agent String,
    visitor_id String,
    minted_token Nullable(String),
    landing_token Nullable(String),
    webview LowCardinality(Nullable(String)),
    share_token Nullable(String),
    share_method Nullable(Enum8('copy' = 1, 'button' = 2, 'native' = 3, 'address_bar' = 4)),
    share_target LowCardinality(Nullable(String)),
    parent_token Nullable(String),
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
    landing_share_target LowCardinality(Nullable(String)),
    landing_sharer_visitor_id Nullable(String),
    landing_parent_token Nullable(String),
    -- Where a visit landed, for "top articles" without parsing URLs at query time.
    page_path String MATERIALIZED path(url)
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (site_id, toStartOfHour(received_at), channel, received_at)
SETTINGS non_replicated_deduplication_window = 10000;
