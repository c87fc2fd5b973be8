-- AIGNE Hub's model rates name the upstream providers that serve a model (e.g. "OpenAI,
-- Azure"): what a rate's upstream cost is the price of. Free text, shown and filtered on.
ALTER TABLE credit_rates ADD COLUMN providers TEXT;
