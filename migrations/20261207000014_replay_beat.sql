-- When the host running a replay last said it still runs it (ms; NULL before its first
-- beat, when `created_at` stands for it). A replay whose host went away for good (and so
-- never restarts to fail its own) is failed by whichever host reads it once the beat is old.
ALTER TABLE shop_replay ADD COLUMN beat_at BIGINT;
