DROP TABLE IF EXISTS listing_events_outbox;
