/**
 * Request bodies of the OpenAI-compatible APIs sluice fronts, with the fields rules commonly read.
 * `sluice serve --check` warns about a rule that reads a `request.json` field none of them has (a typo
 * such as `max_token` fails on every request, and a deny or review rule that fails refuses it). An empty
 * object is a free-form map (`metadata`, `logit_bias`): any field below it is accepted. Values only show
 * the shape; several samples of one API give the alternative shapes of a field (a string or a list).
 */

/** One sample body and the API it stands for. */
export interface SampleRequest {
  readonly name: string;
  readonly body: unknown;
}

const chatMessages = [
  { role: 'system', content: 'You are terse.', name: 'sys' },
  { role: 'developer', content: [{ type: 'text', text: 'Answer in English.' }] },
  {
    role: 'user',
    content: [
      { type: 'text', text: 'What is in this image?' },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'auto' } },
      { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
      { type: 'file', file: { file_id: 'file-1', file_data: 'AAAA', filename: 'a.pdf' } },
    ],
  },
  {
    role: 'assistant',
    content: 'Calling a tool.',
    refusal: null,
    audio: { id: 'audio-1' },
    tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } }],
  },
  { role: 'tool', tool_call_id: 'call_1', content: 'result' },
];

const chatCommon = {
  model: 'gpt-4o-mini',
  messages: chatMessages,
  max_tokens: 256,
  max_completion_tokens: 256,
  temperature: 0.2,
  top_p: 1,
  n: 1,
  stream: true,
  stream_options: { include_usage: true },
  presence_penalty: 0,
  frequency_penalty: 0,
  logit_bias: {},
  logprobs: false,
  top_logprobs: 0,
  user: 'user-1',
  seed: 7,
  tools: [{ type: 'function', function: { name: 'lookup', description: 'Looks up', parameters: {}, strict: true } }],
  parallel_tool_calls: true,
  metadata: {},
  store: false,
  reasoning_effort: 'low',
  service_tier: 'auto',
  modalities: ['text', 'audio'],
  audio: { voice: 'alloy', format: 'mp3' },
  prediction: { type: 'content', content: 'draft' },
  web_search_options: { search_context_size: 'low', user_location: {} },
  verbosity: 'low',
  prompt_cache_key: 'key',
  safety_identifier: 'id',
};

const responsesCommon = {
  model: 'gpt-4.1',
  instructions: 'Be brief.',
  max_output_tokens: 512,
  max_tool_calls: 4,
  temperature: 0.2,
  top_p: 1,
  top_logprobs: 0,
  stream: false,
  background: false,
  tools: [
    { type: 'function', name: 'lookup', description: 'Looks up', parameters: {}, strict: true },
    { type: 'file_search', vector_store_ids: ['vs_1'], max_num_results: 5 },
    { type: 'web_search_preview', search_context_size: 'low', user_location: {} },
  ],
  parallel_tool_calls: true,
  previous_response_id: 'resp_1',
  conversation: 'conv_1',
  reasoning: { effort: 'medium', summary: 'auto' },
  text: { format: { type: 'json_schema', name: 'answer', schema: {}, strict: true }, verbosity: 'low' },
  truncation: 'auto',
  metadata: {},
  store: true,
  user: 'user-1',
  include: ['file_search_call.results'],
  service_tier: 'auto',
  prompt: { id: 'pmpt_1', version: '2', variables: {} },
  prompt_cache_key: 'key',
  safety_identifier: 'id',
};

/** The built-in samples: chat completions, completions, embeddings and responses, each in its usual shapes. */
export const SAMPLE_REQUESTS: readonly SampleRequest[] = [
  {
    name: 'chat completion',
    body: { ...chatCommon, stop: ['\n'], tool_choice: 'auto', response_format: { type: 'json_schema', json_schema: { name: 'answer', description: 'd', schema: {}, strict: true } } },
  },
  {
    name: 'chat completion (object and string forms)',
    body: { ...chatCommon, stop: 'END', tool_choice: { type: 'function', function: { name: 'lookup' } }, response_format: { type: 'json_object' } },
  },
  {
    name: 'completion',
    body: {
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'Say hi',
      suffix: '.',
      max_tokens: 16,
      temperature: 0,
      top_p: 1,
      n: 1,
      stream: false,
      stream_options: { include_usage: true },
      logprobs: 0,
      echo: false,
      stop: ['\n'],
      presence_penalty: 0,
      frequency_penalty: 0,
      best_of: 1,
      logit_bias: {},
      user: 'user-1',
      seed: 7,
    },
  },
  { name: 'completion (list prompt)', body: { model: 'gpt-3.5-turbo-instruct', prompt: ['Say hi', 'Say bye'], stop: 'END' } },
  { name: 'embedding', body: { model: 'text-embedding-3-small', input: 'hello', encoding_format: 'float', dimensions: 256, user: 'user-1' } },
  { name: 'embedding (list input)', body: { model: 'text-embedding-3-small', input: ['hello', 'world'] } },
  { name: 'response (string input)', body: { ...responsesCommon, input: 'Say hi', tool_choice: 'auto' } },
  {
    name: 'response (item input)',
    body: {
      ...responsesCommon,
      tool_choice: { type: 'function', name: 'lookup' },
      input: [
        {
          type: 'message',
          role: 'user',
          content: [
            { type: 'input_text', text: 'What is in this file?' },
            { type: 'input_image', image_url: 'https://example.com/a.png', file_id: 'file-1', detail: 'auto' },
            { type: 'input_file', file_id: 'file-2', file_data: 'AAAA', filename: 'a.pdf' },
          ],
        },
        { type: 'function_call', call_id: 'call_1', name: 'lookup', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_1', output: 'result' },
      ],
    },
  },
];
