-- Real-time aggregates per site x minute x channel x channel_source, fed by
-- materialized views on every insert into events. Target tables keep their
-- own deduplication window so that a retried insert into events is not
-- counted twice here either (the sink inserts with
-- deduplicate_blocks_in_dependent_materialized_views = 1).
--
-- visits and visitors count pageviews of people (bots and link-preview
-- fetchers excluded); shares_* count explicit share events by method;
-- preview_fetches counts link-preview fetchers (evidence of a pasted link).
-- Read visitors with uniqCombinedMerge(visitors).
CREATE TABLE IF NOT EXISTS {db}.traffic_per_minute
(
    site_id LowCardinality(String),
    minute DateTime('UTC'),
    channel Enum8('dark_social' = 1, 'social' = 2, 'search' = 3, 'ai' = 4, 'email' = 5, 'paid' = 6, 'referral' = 7, 'internal' = 8, 'direct' = 9),
    channel_source LowCardinality(String),
    visits SimpleAggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqCombined, String),
    shares_copy SimpleAggregateFunction(sum, UInt64),
    shares_button SimpleAggregateFunction(sum, UInt64),
    shares_native SimpleAggregateFunction(sum, UInt64),
    preview_fetches SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (site_id, minute, channel, channel_source)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.traffic_per_minute_mv TO {db}.traffic_per_minute AS
SELECT
    site_id,
    toStartOfMinute(received_at) AS minute,
    channel,
    channel_source,
    toUInt64(countIf(kind = 'pageview' AND NOT is_bot)) AS visits,
    uniqCombinedStateIf(visitor_id, kind = 'pageview' AND NOT is_bot) AS visitors,
    toUInt64(countIf(kind = 'share' AND share_method = 'copy')) AS shares_copy,
    toUInt64(countIf(kind = 'share' AND share_method = 'button')) AS shares_button,
    toUInt64(countIf(kind = 'share' AND share_method = 'native')) AS shares_native,
    toUInt64(countIf(preview_app != '')) AS preview_fetches
FROM {db}.events
GROUP BY site_id, minute, channel, channel_source;

-- Link-preview fetches per app: each is evidence that a link was pasted there.
CREATE TABLE IF NOT EXISTS {db}.previews_per_minute
(
    site_id LowCardinality(String),
    minute DateTime('UTC'),
    preview_app LowCardinality(String),
    fetches SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (site_id, minute, preview_app)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.previews_per_minute_mv TO {db}.previews_per_minute AS
SELECT site_id, toStartOfMinute(received_at) AS minute, preview_app, toUInt64(count()) AS fetches
FROM {db}.events
WHERE preview_app != ''
GROUP BY site_id, minute, preview_app;
