-- A batch looks its events' kept answers up by event id (short, indexed), and matches type and
-- source in the worker: no UUID is derived per consumed event to find the rare ones kept.
-- Answers are written rarely (conflicts, refusals by role, webhook refusals), so the index
-- costs little.
CREATE INDEX event_answers_by_event_id ON event_answers (event_id);
