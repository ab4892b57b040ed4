-- Dark-social vs public-social visits per site and bucket (minute, hour,
-- day). A materialized view writes each visit into its three buckets, so a
-- query for one site, bucket size and time range reads only its primary-key
-- range. share_ratio adds dark_public_ratio = dark / public, NULL when a
-- bucket has no public-social visit.
CREATE TABLE IF NOT EXISTS {db}.share_ratio_buckets
(
    site_id LowCardinality(String),
    bucket_size Enum8('minute' = 1, 'hour' = 2, 'day' = 3),
    bucket DateTime('UTC'),
    dark_social_visits SimpleAggregateFunction(sum, UInt64),
    public_social_visits SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (site_id, bucket_size, bucket)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.share_ratio_buckets_mv TO {db}.share_ratio_buckets AS
SELECT
    site_id,
    bucket_size,
    multiIf(bucket_size = 'minute', toStartOfMinute(received_at), bucket_size = 'hour', toStartOfHour(received_at), toStartOfDay(received_at)) AS bucket,
    toUInt64(countIf(channel = 'dark_social')) AS dark_social_visits,
    toUInt64(countIf(channel = 'social')) AS public_social_visits
FROM {db}.events
ARRAY JOIN ['minute', 'hour', 'day'] AS bucket_size
WHERE kind = 'pageview' AND NOT is_bot AND channel IN ('dark_social', 'social')
GROUP BY site_id, bucket_size, bucket;

CREATE VIEW IF NOT EXISTS {db}.share_ratio AS
SELECT
    site_id,
    bucket_size,
    bucket,
    sum(dark_social_visits) AS dark_social_visits,
    sum(public_social_visits) AS public_social_visits,
    if(public_social_visits = 0, NULL, dark_social_visits / public_social_visits) AS dark_public_ratio
FROM {db}.share_ratio_buckets
GROUP BY site_id, bucket_size, bucket;
