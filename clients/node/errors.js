// The one error herald's SDK throws for anything herald refused.

export class HeraldError extends Error {
  /**
   * `code` is herald's snake_case code (`bad_channel`, `forbidden`...),
   * `status` the HTTP status (`null` for an error frame on `/ws`).
   */
  constructor(code, message, status = null) {
    super(`${message} (${status == null ? '' : `${status} `}${code})`);
    this.name = 'HeraldError';
    this.code = code;
    this.status = status;
  }

  /**
   * Reads herald's `{"error": {"code", "message"}}`; anything else (a proxy's
   * HTML page, say) becomes code `http_error`.
   */
  static fromBody(status, text) {
    try {
      const { error } = JSON.parse(text);
      if (error && typeof error.code === 'string') return new HeraldError(error.code, String(error.message ?? ''), status);
    } catch { /* not herald's JSON */ }
    return new HeraldError('http_error', text.slice(0, 200) || `HTTP ${status}`, status);
  }
}

export async function errorFrom(response) {
  return HeraldError.fromBody(response.status, await response.text().catch(() => ''));
}
