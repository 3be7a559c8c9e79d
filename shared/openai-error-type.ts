/**
 * OpenAI's error `type` for an HTTP status, so SDKs classify sluice's errors — the gateway's, and those the
 * CLI answers on the local port — the way they classify the API's.
 */
export function openAiErrorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    default:
      return status >= 500 ? 'server_error' : 'invalid_request_error';
  }
}
