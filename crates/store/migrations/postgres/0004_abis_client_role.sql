-- The abis_client role (systems that send ABIS requests: MOSIP's registration processor,
-- Tessera's own pipeline).
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'operator', 'supervisor', 'adjudicator', 'auditor', 'abis_client'));
