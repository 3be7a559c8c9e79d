// The masking profile the benches run "as shipped" with: the built-in PII detectors, redacted. One place, so
// the data-path and capacity parts measure the same product.
export const PII_DETECTORS = ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'];

/** `masking_profiles` with one profile, `pii`, for a gateway config. */
export const PII_PROFILES = { pii: { detectors: PII_DETECTORS, style: 'redact' } };

/** The PII the fixed-answer upstream puts in its answer (bench/upstream.js): what a masked answer must not hold. */
export const FAST_ANSWER_PII = ['jane.doe@example.com', '+1 415 555 0100'];
