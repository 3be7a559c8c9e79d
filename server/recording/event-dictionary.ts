/**
 * The preset dictionary of every compressed record's DEFLATE stream (format 3): the field names, event
 * types, header names and inference-API words that recur in every session. A record is compressed on its
 * own, so a reader or verifier never needs another record's plaintext, and without shared history a small
 * record would barely shrink: the dictionary is that history. It is part of the format: files written with
 * it must always inflate with it, so it is never edited; another one would need another header value.
 *
 * DEFLATE reaches back 32 KiB and a nearer match costs fewer bits: the most frequent text comes last.
 */
const PIECES: readonly string[] = [
  // Rare events and fields.
  'grpc.message","dir":"up","index":0,"bytes":,"compressed":true,"json":{"model_name":"","inputs":[{"name":"","datatype":"FP32","shape":[',
  'tcp.chunk","dir":"up","bytes":',
  'review.requested","review":"rv_","rule":"","reviewers":["review.approved","by":"","note":"review.rejected","review.expired',
  'policy.decision","action":"deny","rule":"","reason":"","reviewers":["',
  'exchange.error","code":"ERR_POLICY_DENIED","message":"","after_response_head":false,"request":{"method":"POST","path":"',
  'masking.summary","findings":[{"entity":"EMAIL","rule":"email","count":1},{"entity":"PHONE","rule":"phone","count":',
  '"not_kept":"record.response_body is none","not_kept":"masking could not read it (binary or compressed): only its size and SHA-256 are kept"',
  '"trailers":{"grpc-status":"0","grpc-message":""}',
  // Once per session.
  '{"seq":0,"t":0,"type":"session.start","session":"ses_","started_at":17,"user":{"sub":"","email":"","groups":["","client_id":"","issuer":"https://',
  '"},"connection":{"name":"llm","type":"http"},"via":"tunnel","via":"proxy","client_address":"127.0.0.1","cli_version":"0.',
  '","record":{"request_body":"raw","response_body":"raw","raw":false},"resend_of":"","seal_log":"sl_',
  '"type":"session.end","reason":"closed","reason":"gateway shutdown","exchanges":',
  '"type":"session.checkpoint","session":"ses_","records":,"final_hash":"","signature":"","public_key":"',
  // Inference bodies: requests, answers, streamed answers.
  '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.',
  '{"model":"","input":"","instructions":"","max_output_tokens":,"reasoning":{"effort":"',
  '{"model":"","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"',
  '"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":,"temperature":0.,"tools":[{"type":"function","function":{"name":"","parameters":{',
  '{"id":"chatcmpl-","object":"chat.completion","created":17,"model":"","choices":[{"index":0,"message":{"role":"assistant","content":"',
  '","refusal":null,"tool_calls":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":,"completion_tokens":,"total_tokens":},"system_fingerprint":"fp_"}',
  'data: {"id":"chatcmpl-","object":"chat.completion.chunk","created":17,"model":"","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n',
  'data: {"id":"chatcmpl-","object":"chat.completion.chunk","created":17,"model":"","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\ndata: [DONE]\n\n',
  // Headers: callers (curl, fetch, the OpenAI SDKs, httpx), then upstreams.
  '"x-stainless-lang":"js","x-stainless-package-version":"4.","x-stainless-os":"Linux","x-stainless-arch":"x64","x-stainless-runtime":"node","x-stainless-runtime-version":"v20.',
  '","x-stainless-retry-count":"0","x-stainless-timeout":"600","x-stainless-async":"false","user-agent":"OpenAI/Python 1.","user-agent":"OpenAI/JS 4.',
  '"user-agent":"curl/8.","user-agent":"python-httpx/0.","accept":"text/event-stream","accept-language":"*","sec-fetch-mode":"cors","user-agent":"node",',
  '"traceparent":"00-","x-request-id":"req_","openai-organization":"","openai-processing-ms":"","openai-version":"2020-10-01","x-ratelimit-remaining-requests":"',
  '"server":"uvicorn","server":"nginx","cache-control":"no-cache","content-type":"text/event-stream; charset=utf-8","transfer-encoding":"chunked","x-accel-buffering":"no",',
  '"content-type":"application/json","content-length":"","date":"Thu, Fri, Sat, Sun, Mon, Tue, Wed, Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec 2026 GMT","connection":"keep-alive","keep-alive":"timeout=5"}}',
  // Every exchange.
  '{"seq":,"t":,"type":"exchange.request","exchange":"req_","method":"POST","path":"/v1/chat/completions","query":"","headers":{"host":"127.0.0.1:","connection":"keep-alive","content-type":"application/json","authorization":"[removed]","accept":"application/json","accept-encoding":"gzip, deflate, br","content-length":"',
  '"},"decision":{"action":"allow","rule":""},"body":{"capture":"raw","capture":"masked","capture":"digest","bytes":,"sha256":"","streamed":true,"unread":true}}',
  '{"seq":,"t":,"type":"exchange.response","exchange":"req_","status":200,"headers":{"content-type":"application/json","content-length":"',
  '{"seq":,"t":,"type":"exchange.chunk","exchange":"req_","dir":"down","bytes":,"parts":[[0,],[1,],[2,',
  '{"seq":,"t":,"type":"exchange.end","exchange":"req_","status":200,"complete":true,"duration_ms":,"ttfb_ms":,"first_chunk_ms":,"bytes_up":,"bytes_down":,"request_body":{"bytes":,"sha256":""},"response_body":{"bytes":,"sha256":""},"model":"","usage":{"prompt_tokens":,"completion_tokens":,"total_tokens":},"finish_reason":"stop"}',
];

/** The dictionary's bytes. */
export const EVENT_DICTIONARY: Buffer = Buffer.from(PIECES.join(''), 'utf8');
