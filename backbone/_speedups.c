/*
 * Compiled fast paths of the hot loops, each the twin of a Python path that stays the reference:
 *
 * - Encoder / Decoder: the Avro codec (backbone.codec.avro), a record to its single-object
 *   encoding and back into its dataclass; Dispatch, the header lookup in front of the decoders;
 * - utc_millis, isoformat: record timestamps (backbone.record_time) and ISO text of UTC times
 *   (backbone.domain.plain);
 * - Slots: copy-with-changes and positional construction of the frozen, slotted domain
 *   dataclasses (backbone.domain.plain), without the per-field object.__setattr__ of
 *   a frozen dataclass;
 * - OrderMachine: the plain transitions of the order state machine
 *   (backbone.domain.order_state._next), falling back to the Python path for the rest;
 * - PositionStep: one netting step of a position (backbone.domain.positions), falling back to
 *   the Python path for anything but the plain case;
 * - SlotsMatch: whether an order event reports what the machine computed
 *   (order_state._reported_as_computed), field by field;
 * - any_nul: whether one of an event's text fields holds a NUL (projections.trading);
 * - rows_text: the rows of one upsert as the one text parameter its statement splits
 *   (projections.store), handing anything but the plain values to the Python formatter.
 *
 * These are accelerators, not a second implementation. Each Encoder/Decoder is built by
 * avro.py from the same field plan as the generated Python paths and holds that Python path as
 * its `fallback`. Whenever anything is not the plain case (a value of an unexpected type, a
 * non-UTC datetime, a cache miss helper that raises, bytes that do not parse, trailing
 * bytes...) the C code gives up and returns fallback(argument): the Python path then produces
 * the same result or raises the codec's typed, explained error. So the C code only ever has to
 * be right about what it accepts; tests check byte-for-byte and value-for-value equality with
 * the Python paths. Errors that are not `Exception`s (KeyboardInterrupt, ...) propagate.
 *
 * Decimals that are not plain digits go through the Python helpers (text -> wire bytes, wire
 * bytes -> Decimal), so the exactness rules live in one place.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

enum kind {
    K_NULL = 0,   /* encode only: a schema field the dataclass lacks, written as null */
    K_STRING = 1,
    K_BYTES = 2,
    K_LONG = 3,
    K_INT = 4,
    K_BOOL = 5,
    K_DOUBLE = 6,
    K_TIMESTAMP = 7, /* timestamp-micros */
    K_DECIMAL = 8,
    K_ENUM = 9,
};

#define MAX_FIELDS 128

/* ------------------------------------------------------------------------------------------
 * Civil calendar <-> days since 1970-01-01 (H. Hinnant's algorithms, proleptic Gregorian)
 * ------------------------------------------------------------------------------------------ */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* An exact datetime whose tzinfo is datetime.timezone.utc: the only one the fast paths read. */
static int is_utc_datetime(PyObject *v) {
    return PyDateTime_CheckExact(v) && ((PyDateTime_DateTime *)v)->hastzinfo &&
           ((PyDateTime_DateTime *)v)->tzinfo == PyDateTime_TimeZone_UTC;
}

/* Microseconds since 1970-01-01 of a UTC datetime (is_utc_datetime). */
static int64_t utc_micros(PyObject *v) {
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
    int64_t secs = days * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600 + PyDateTime_DATE_GET_MINUTE(v) * 60 +
                   PyDateTime_DATE_GET_SECOND(v);
    return secs * 1000000 + PyDateTime_DATE_GET_MICROSECOND(v);
}

/* Gives up (returns 0 without an error set) on anything but the plain case; the caller then
 * falls back. Returns -1 only for errors that must propagate. */
static int give_up(void) {
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        PyErr_Clear();
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Encoder
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    Py_ssize_t offset; /* slot offset in the record; unused for K_NULL */
    int kind;
    int nullable;
    PyObject *a; /* K_DECIMAL: cache dict; K_ENUM: symbol -> varint bytes dict */
    PyObject *b; /* K_DECIMAL: from_text(str) -> bytes */
    PyObject *c; /* K_DECIMAL: from_value(value) -> bytes */
    int scale, precision; /* K_DECIMAL */
} EncField;

typedef struct {
    Py_ssize_t offset;
    PyObject *value;
} Required;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *cls;
    PyObject *header;
    PyObject *fallback;
    PyObject *decimal_type;
    int direct_decimals; /* the decimal layout was probed: read it instead of str() */
    Py_ssize_t cache_max;
    Py_ssize_t nfields;
    EncField fields[MAX_FIELDS];
    Py_ssize_t nrequired; /* dataclass-only fields: must hold their default */
    Required required[MAX_FIELDS];
} Encoder;

typedef struct {
    char *p;
    Py_ssize_t len, cap;
    char stack[1024];
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + more)
        cap *= 2;
    char *p;
    if (b->p == b->stack) {
        p = PyMem_Malloc(cap);
        if (p)
            memcpy(p, b->stack, b->len);
    } else {
        p = PyMem_Realloc(b->p, cap);
    }
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int buf_byte(Buf *b, unsigned char c) {
    if (buf_reserve(b, 1) < 0)
        return -1;
    b->p[b->len++] = (char)c;
    return 0;
}

static int buf_uvarint(Buf *b, uint64_t z) {
    if (buf_reserve(b, 10) < 0)
        return -1;
    while (z >= 0x80) {
        b->p[b->len++] = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    b->p[b->len++] = (char)z;
    return 0;
}

static inline uint64_t zigzag(int64_t n) { return ((uint64_t)n << 1) ^ (uint64_t)(n >> 63); }

/* ---- decimals: the plain cases without Python arithmetic (others go to the Python helpers) */

typedef __int128 i128;
typedef unsigned __int128 u128;

static i128 pow10_i128(int k) {
    i128 r = 1;
    while (k-- > 0)
        r *= 10;
    return r;
}

/* The unscaled integer of a Decimal's str() at `scale`, for plain digit strings only
 * ("-123.45", at most `scale` places, fewer than `precision` digits); 0 = not plain. */
static int unscaled_from_text(const char *s, Py_ssize_t len, int scale, int precision, i128 *out) {
    Py_ssize_t i = 0;
    int neg = 0, digits = 0, frac = -1;
    i128 n = 0;
    if (precision > 38 || scale > precision)
        return 0;
    if (i < len && s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i == len)
        return 0;
    for (; i < len; i++) {
        char c = s[i];
        if (c == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (c < '0' || c > '9')
            return 0; /* exponent form, NaN, Infinity */
        if (frac >= 0 && ++frac > scale)
            return 0;
        if (n || c != '0')
            if (++digits > precision)
                return 0;
        n = n * 10 + (c - '0');
    }
    if (frac == 0)
        return 0; /* "1." is not what str(Decimal) writes */
    int pad = scale - (frac < 0 ? 0 : frac);
    if (digits && digits + pad > precision)
        return 0;
    n *= pow10_i128(pad);
    *out = neg ? -n : n;
    return 1;
}

/* CPython's C decimal object, read directly: PyDecObject of Modules/_decimal/_decimal.c and
 * libmpdec's mpd_t (64-bit: 19 decimal digits per word). Private layouts, so an Encoder reads
 * them only when told the layout was probed (`decimal_parts` against Decimal.as_tuple(), see
 * avro.py); otherwise it goes through str(). */
typedef struct {
    uint8_t flags;
    Py_ssize_t exp, digits, len, alloc;
    uint64_t *data;
} MpdView;

typedef struct {
    PyObject_HEAD
    Py_hash_t hash;
    MpdView dec;
} DecView;

#define MPD_NEG 1
#define MPD_SPECIAL 14 /* infinity, NaN, sNaN */
#define MPD_RADIX UINT64_C(10000000000000000000)

/* (negative, coefficient, exponent) of a finite decimal of at most two words; 0 otherwise. */
static int mpd_parts(PyObject *v, int *negative, i128 *coefficient, Py_ssize_t *exponent, Py_ssize_t *digits) {
    const MpdView *d = &((DecView *)v)->dec;
    /* The words must be the object's own inline storage (where a small Decimal keeps them) and
     * the sizes sane before anything is read through the pointer: on a build whose layout
     * differs, the probe then answers "no" instead of reading stray memory. A small decimal
     * whose words live elsewhere just takes the str() path. */
    if (d->data != (const uint64_t *)((const DecView *)v + 1) || d->alloc < d->len || d->alloc > 64)
        return 0;
    if ((d->flags & MPD_SPECIAL) || d->len < 1 || d->len > 2)
        return 0;
    *negative = d->flags & MPD_NEG;
    *coefficient = (i128)d->data[0] + (d->len == 2 ? (i128)d->data[1] * (i128)MPD_RADIX : 0);
    *exponent = d->exp;
    *digits = d->digits;
    return 1;
}

/* The unscaled integer of decimal v at `scale` when it is exact and fits `precision`; 0 = ask
 * the Python helper (it refuses or converts the rare rest, e.g. 1.000000000 with 9 places). */
static int unscaled_from_mpd(PyObject *v, int scale, int precision, i128 *out) {
    int negative;
    i128 c;
    Py_ssize_t exp, digits;
    if (precision > 38 || !mpd_parts(v, &negative, &c, &exp, &digits))
        return 0;
    Py_ssize_t shift = exp + scale;
    i128 n;
    if (c == 0) {
        n = 0;
    } else if (shift >= 0) {
        if (digits + shift > precision)
            return 0;
        n = c * pow10_i128((int)shift);
    } else {
        if (-shift > 38)
            return 0;
        i128 unit = pow10_i128((int)-shift);
        if (c % unit)
            return 0;
        n = c / unit;
    }
    if (n >= pow10_i128(precision))
        return 0;
    *out = negative ? -n : n;
    return 1;
}

/* decimal_parts(d): (negative, coefficient, exponent) as read from the object's memory, or None
 * (special or over two words). Only for probing the layout against Decimal.as_tuple(). */
static PyObject *decimal_parts(PyObject *module, PyObject *args) {
    PyObject *v, *decimal_type;
    if (!PyArg_ParseTuple(args, "OO", &v, &decimal_type))
        return NULL;
    if (!PyType_Check(decimal_type) || !Py_IS_TYPE(v, (PyTypeObject *)decimal_type) ||
        ((PyTypeObject *)decimal_type)->tp_basicsize < (Py_ssize_t)sizeof(DecView)) {
        PyErr_SetString(PyExc_TypeError, "decimal_parts needs an instance of a C decimal type");
        return NULL;
    }
    int negative;
    i128 c;
    Py_ssize_t exp, digits;
    if (!mpd_parts(v, &negative, &c, &exp, &digits))
        Py_RETURN_NONE;
    char text[48];
    int t = 47;
    text[t] = 0;
    u128 m = (u128)c;
    do {
        text[--t] = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m);
    PyObject *coefficient = PyLong_FromString(text + t, NULL, 10);
    if (!coefficient)
        return NULL;
    return Py_BuildValue("(NNnn)", PyBool_FromLong(negative), coefficient, exp, digits);
}

/* Avro decimal bytes field (length varint + minimal big-endian two's complement) of n. */
static PyObject *decimal_field_bytes(i128 n) {
    u128 m = (u128)(n >= 0 ? n : ~n);
    int bits = 0;
    while (m) {
        bits++;
        m >>= 1;
    }
    int len = (bits + 8) >> 3;
    unsigned char out[1 + 17];
    out[0] = (unsigned char)(2 * len);
    u128 u = (u128)n;
    for (int i = len; i >= 1; i--) {
        out[i] = (unsigned char)(u & 0xFF);
        u = n >= 0 ? u >> 8 : (u >> 8) | ((u128)0xFF << 120);
    }
    return PyBytes_FromStringAndSize((const char *)out, len + 1);
}

/* The Decimal of unscaled bytes `raw` at `scale`, built from its text (exponent -scale, like
 * Decimal(n).scaleb(-scale)); NULL without an error for what the Python helper must judge. */
static PyObject *decimal_from_raw(PyObject *decimal_type, const unsigned char *raw, Py_ssize_t len, int scale,
                                  int precision) {
    if (len < 1 || len > 16 || precision > 38 || scale > precision)
        return NULL;
    u128 u = raw[0] & 0x80 ? ~(u128)0 : 0;
    for (Py_ssize_t i = 0; i < len; i++)
        u = (u << 8) | raw[i];
    i128 n = (i128)u;
    i128 limit = pow10_i128(precision);
    if (n <= -limit || n >= limit)
        return NULL;
    char text[48];
    char digits[40];
    int nd = 0;
    u128 m = n < 0 ? (u128)(-n) : (u128)n;
    do {
        digits[nd++] = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m);
    while (nd <= scale)
        digits[nd++] = '0'; /* at least one digit before the point */
    int t = 0;
    if (n < 0)
        text[t++] = '-';
    for (int i = nd - 1; i >= 0; i--) {
        text[t++] = digits[i];
        if (i == scale && scale > 0)
            text[t++] = '.';
    }
    PyObject *str = PyUnicode_FromStringAndSize(text, t);
    if (!str)
        return NULL;
    PyObject *d = PyObject_CallOneArg(decimal_type, str);
    Py_DECREF(str);
    return d;
}

static int buf_bytes_object(Buf *b, PyObject *bytes) {
    if (!PyBytes_CheckExact(bytes))
        return -1;
    return buf_put(b, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
}

/* Appends the value; 1 = done, 0 = give up (fallback), -1 = error to propagate. */
static int encode_value(Encoder *self, EncField *f, PyObject *v, Buf *b) {
    switch (f->kind) {
    case K_STRING: {
        if (!PyUnicode_CheckExact(v))
            return 0;
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (!s)
            return give_up();
        if (buf_uvarint(b, (uint64_t)n * 2) < 0 || buf_put(b, s, n) < 0)
            return -1;
        return 1;
    }
    case K_BYTES:
        if (!PyBytes_CheckExact(v))
            return 0;
        if (buf_uvarint(b, (uint64_t)PyBytes_GET_SIZE(v) * 2) < 0 || buf_put(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v)) < 0)
            return -1;
        return 1;
    case K_LONG:
    case K_INT: {
        if (!PyLong_CheckExact(v))
            return 0;
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (n == -1 && PyErr_Occurred()))
            return give_up();
        if (f->kind == K_INT && (n < INT32_MIN || n > INT32_MAX))
            return 0;
        return buf_uvarint(b, zigzag(n)) < 0 ? -1 : 1;
    }
    case K_BOOL:
        if (v != Py_True && v != Py_False)
            return 0;
        return buf_byte(b, v == Py_True) < 0 ? -1 : 1;
    case K_DOUBLE: {
        if (!PyFloat_CheckExact(v))
            return 0;
        if (buf_reserve(b, 8) < 0)
            return -1;
        if (PyFloat_Pack8(PyFloat_AS_DOUBLE(v), b->p + b->len, 1) < 0)
            return give_up();
        b->len += 8;
        return 1;
    }
    case K_TIMESTAMP: {
        if (!is_utc_datetime(v))
            return 0; /* naive or another zone: the Python path converts or refuses */
        return buf_uvarint(b, zigzag(utc_micros(v))) < 0 ? -1 : 1;
    }
    case K_DECIMAL: {
        PyObject *s;
        i128 unscaled;
        if (self->direct_decimals && Py_IS_TYPE(v, (PyTypeObject *)self->decimal_type) &&
            unscaled_from_mpd(v, f->scale, f->precision, &unscaled)) {
            s = decimal_field_bytes(unscaled);
            if (!s)
                return give_up();
        } else if (Py_IS_TYPE(v, (PyTypeObject *)self->decimal_type)) {
            PyObject *key = PyObject_Str(v);
            if (!key)
                return give_up();
            s = PyDict_GetItemWithError(f->a, key);
            if (s) {
                Py_INCREF(s);
            } else if (PyErr_Occurred()) {
                Py_DECREF(key);
                return give_up();
            } else {
                Py_ssize_t n;
                const char *text = PyUnicode_AsUTF8AndSize(key, &n);
                if (text && unscaled_from_text(text, n, f->scale, f->precision, &unscaled))
                    s = decimal_field_bytes(unscaled);
                else
                    s = PyObject_CallOneArg(f->b, key);
                if (!s || !PyBytes_CheckExact(s)) {
                    Py_DECREF(key);
                    Py_XDECREF(s);
                    return give_up();
                }
                if (PyDict_GET_SIZE(f->a) >= self->cache_max)
                    PyDict_Clear(f->a);
                if (PyDict_SetItem(f->a, key, s) < 0) {
                    Py_DECREF(key);
                    Py_DECREF(s);
                    return give_up();
                }
            }
            Py_DECREF(key);
        } else {
            s = PyObject_CallOneArg(f->c, v);
            if (!s || !PyBytes_CheckExact(s)) {
                Py_XDECREF(s);
                return give_up();
            }
        }
        int rc = buf_bytes_object(b, s);
        Py_DECREF(s);
        return rc < 0 ? -1 : 1;
    }
    case K_ENUM: {
        PyObject *s = PyDict_GetItemWithError(f->a, v); /* borrowed */
        if (!s)
            return give_up();
        return buf_bytes_object(b, s) < 0 ? -1 : 1;
    }
    }
    return 0;
}

/* The encoding of `r`, or NULL with no error set to mean "use the fallback". */
static PyObject *encode_fast(Encoder *self, PyObject *r, int *propagate) {
    Buf b;
    b.p = b.stack;
    b.len = 0;
    b.cap = (Py_ssize_t)sizeof(b.stack);
    PyObject *result = NULL;
    *propagate = 0;
    if (Py_TYPE(r) != self->cls)
        return NULL;
    if (buf_put(&b, PyBytes_AS_STRING(self->header), PyBytes_GET_SIZE(self->header)) < 0)
        goto error;
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        EncField *f = &self->fields[i];
        if (f->kind == K_NULL) {
            if (buf_byte(&b, 0) < 0)
                goto error;
            continue;
        }
        PyObject *v = *(PyObject **)((char *)r + f->offset);
        if (v == NULL)
            goto done; /* unset slot: the Python path explains */
        if (f->nullable) {
            if (v == Py_None) {
                if (buf_byte(&b, 0) < 0)
                    goto error;
                continue;
            }
            if (buf_byte(&b, 2) < 0)
                goto error;
        }
        int rc = encode_value(self, f, v, &b);
        if (rc < 0)
            goto error;
        if (rc == 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < self->nrequired; i++) {
        PyObject *v = *(PyObject **)((char *)r + self->required[i].offset);
        if (v == NULL)
            goto done;
        int eq = PyObject_RichCompareBool(v, self->required[i].value, Py_EQ);
        if (eq != 1) {
            if (eq < 0 && give_up() < 0)
                goto error;
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(b.p, b.len);
    if (!result)
        goto error;
    goto done;
error:
    if (give_up() < 0)
        *propagate = 1;
done:
    if (b.p != b.stack)
        PyMem_Free(b.p);
    return result;
}

static PyObject *encoder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Encoder *self = (Encoder *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError, "an encoder takes one positional argument, the record");
        return NULL;
    }
    int propagate;
    PyObject *out = encode_fast(self, args[0], &propagate);
    if (out || propagate)
        return out;
    return PyObject_CallOneArg(self->fallback, args[0]);
}

/* The offset of slot `name` of `cls`, or -1 with an error set. */
static Py_ssize_t slot_offset(PyTypeObject *cls, PyObject *name) {
    PyObject *d = PyDict_GetItemWithError(cls->tp_dict, name);
    if (!d) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s has no slot %R", cls->tp_name, name);
        return -1;
    }
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", cls->tp_name, name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a plain object slot", cls->tp_name, name);
        return -1;
    }
    return m->offset;
}

static int check_class(PyObject *cls) {
    if (!PyType_Check(cls) || ((PyTypeObject *)cls)->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "cls must be a class with __slots__ and no __dict__");
        return -1;
    }
    return 0;
}

/* Encoder(cls, header, fields, required, fallback, decimal_type, direct_decimals, cache_max)
 *   fields:   ((slot name | None, kind, nullable, a, b, c, scale, precision), ...) in schema order
 *   required: ((slot name, value), ...) dataclass-only fields and the value they must hold */
static PyObject *encoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *cls, *header, *fields, *required, *fallback, *decimal_type;
    Py_ssize_t cache_max;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Encoder takes positional arguments only");
        return NULL;
    }
    int direct_decimals;
    if (!PyArg_ParseTuple(args, "OO!O!O!OOpn", &cls, &PyBytes_Type, &header, &PyTuple_Type, &fields, &PyTuple_Type,
                          &required, &fallback, &decimal_type, &direct_decimals, &cache_max))
        return NULL;
    if (direct_decimals && (!PyType_Check(decimal_type) ||
                            ((PyTypeObject *)decimal_type)->tp_basicsize < (Py_ssize_t)sizeof(DecView))) {
        PyErr_SetString(PyExc_TypeError, "direct_decimals needs the C decimal type");
        return NULL;
    }
    if (check_class(cls) < 0)
        return NULL;
    if (PyTuple_GET_SIZE(fields) > MAX_FIELDS || PyTuple_GET_SIZE(required) > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "too many fields");
        return NULL;
    }
    Encoder *self = (Encoder *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->vectorcall = encoder_vectorcall;
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    self->header = Py_NewRef(header);
    self->fallback = Py_NewRef(fallback);
    self->decimal_type = Py_NewRef(decimal_type);
    self->direct_decimals = direct_decimals;
    self->cache_max = cache_max;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++) {
        PyObject *name, *a, *b, *c;
        int kind, nullable;
        EncField *f = &self->fields[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "OipOOOii", &name, &kind, &nullable, &a, &b, &c, &f->scale,
                              &f->precision))
            goto fail;
        f->kind = kind;
        f->nullable = nullable;
        if (kind != K_NULL && (f->offset = slot_offset(self->cls, name)) < 0)
            goto fail;
        if ((kind == K_DECIMAL || kind == K_ENUM) && !PyDict_CheckExact(a)) {
            PyErr_SetString(PyExc_TypeError, "decimal and enum fields need a dict");
            goto fail;
        }
        f->a = Py_NewRef(a);
        f->b = Py_NewRef(b);
        f->c = Py_NewRef(c);
        self->nfields = i + 1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(required); i++) {
        PyObject *name, *value;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(required, i), "OO", &name, &value))
            goto fail;
        if ((self->required[i].offset = slot_offset(self->cls, name)) < 0)
            goto fail;
        self->required[i].value = Py_NewRef(value);
        self->nrequired = i + 1;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int encoder_traverse(Encoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->cls);
    Py_VISIT(self->fallback);
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        Py_VISIT(self->fields[i].a);
        Py_VISIT(self->fields[i].b);
        Py_VISIT(self->fields[i].c);
    }
    for (Py_ssize_t i = 0; i < self->nrequired; i++)
        Py_VISIT(self->required[i].value);
    return 0;
}

static int encoder_clear(Encoder *self) {
    Py_CLEAR(self->cls);
    Py_CLEAR(self->header);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->decimal_type);
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        Py_CLEAR(self->fields[i].a);
        Py_CLEAR(self->fields[i].b);
        Py_CLEAR(self->fields[i].c);
    }
    self->nfields = 0;
    for (Py_ssize_t i = 0; i < self->nrequired; i++)
        Py_CLEAR(self->required[i].value);
    self->nrequired = 0;
    return 0;
}

static void encoder_dealloc(Encoder *self) {
    PyObject_GC_UnTrack(self);
    encoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef encoder_members[] = {
    {"fallback", T_OBJECT_EX, offsetof(Encoder, fallback), READONLY, "the Python path this encoder falls back to"},
    {NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backbone._speedups.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Compiled encoder of one record type; falls back to the Python encoder.",
    .tp_new = encoder_new,
    .tp_traverse = (traverseproc)encoder_traverse,
    .tp_clear = (inquiry)encoder_clear,
    .tp_dealloc = (destructor)encoder_dealloc,
    .tp_vectorcall_offset = offsetof(Encoder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = encoder_members,
};

/* ------------------------------------------------------------------------------------------
 * Decoder
 * ------------------------------------------------------------------------------------------ */

/* The values a decoder field produced, by their wire bytes: a direct-mapped table (a key's
 * slot is fixed by its hash; a miss replaces what was there). Trading values repeat (tick
 * grids, round lots, a handful of accounts, symbols and actors): a hit costs a hash and a
 * memcmp where building them cost a bytes object, a dict lookup keyed by it and a Decimal
 * parse or a UTF-8 decode, and equal strings come out as one object, whose hash the state's
 * dicts compute once (callgrind, folding the first 3,000 records of every orders partition and
 * 600 of every marketdata partition of a simulated session, 40,814 records: 7.3 % fewer
 * instructions for the whole fold than with the dicts). Only values that are not GC
 * containers are kept (str, Decimal), so the table needs no traversal. A slot is read and
 * written with the GIL held; a miss may run Python code (the fallback conversion) before it
 * writes the slot, and then simply overwrites whatever another thread put there. */
#define VALUE_KEY_MAX 24
typedef struct {
    PyObject *value; /* NULL: empty */
    Py_ssize_t len;
    unsigned char key[VALUE_KEY_MAX];
} ValueSlot;

typedef struct {
    int kind;
    int nullable;
    Py_ssize_t dest; /* index into the slots, -1: read and dropped */
    PyObject *a;     /* K_ENUM: tuple of members by writer index */
    PyObject *b;     /* K_DECIMAL: decimal_from(raw bytes) -> Decimal */
    int scale, precision; /* K_DECIMAL */
    ValueSlot *cache;     /* K_STRING, K_DECIMAL: cache_slots entries */
} DecField;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *cls;
    PyObject *fallback;
    PyObject *decimal_type;
    Py_ssize_t header_size;
    Py_ssize_t cache_slots; /* entries of each field's ValueSlot table, a power of two */
    Py_ssize_t nslots;
    Py_ssize_t offsets[MAX_FIELDS];
    Py_ssize_t nfields;
    DecField fields[MAX_FIELDS];
    Py_ssize_t ndefaults;
    Py_ssize_t default_dest[MAX_FIELDS];
    PyObject *default_value[MAX_FIELDS];
} Decoder;

/* Zigzag varint at p[*pos]; 0 on anything Python's reader would refuse (or might). */
static int read_long(const unsigned char *p, Py_ssize_t size, Py_ssize_t *pos, int64_t *out) {
    uint64_t n = 0;
    int shift = 0;
    for (;;) {
        if (*pos >= size || shift > 63)
            return 0;
        unsigned char b = p[(*pos)++];
        if (shift == 63 && (b & 0x7E))
            return 0; /* beyond 64 bits */
        n |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
    }
    *out = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
    return 1;
}

static PyObject *datetime_from_micros(int64_t micros) {
    if (micros < -(INT64_C(1) << 60) || micros > (INT64_C(1) << 60))
        return NULL; /* far outside the years 1..9999 (and away from overflow below) */
    int64_t secs = micros >= 0 ? micros / 1000000 : -((-micros + 999999) / 1000000);
    int64_t us = micros - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t sod = secs - days * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return NULL; /* the Python path refuses it */
    return PyDateTimeAPI->DateTime_FromDateAndTime((int)y, (int)m, (int)d, (int)(sod / 3600), (int)(sod / 60 % 60),
                                                   (int)(sod % 60), (int)us, PyDateTime_TimeZone_UTC,
                                                   PyDateTimeAPI->DateTimeType);
}

static inline size_t value_key_hash(const unsigned char *s, Py_ssize_t n) {
    uint64_t h = (uint64_t)n * UINT64_C(0x9E3779B97F4A7C15), w;
    Py_ssize_t i = 0;
    for (; n - i >= 8; i += 8) {
        memcpy(&w, s + i, 8); /* a fixed size: compiled to one load */
        h = (h ^ w) * UINT64_C(0xFF51AFD7ED558CCD);
        h ^= h >> 29;
    }
    if (i < n) {
        for (w = 0; i < n; i++)
            w = (w << 8) | s[i];
        h = (h ^ w) * UINT64_C(0xFF51AFD7ED558CCD);
        h ^= h >> 29;
    }
    return (size_t)(h ^ (h >> 32));
}

/* The value of field f at p[*pos]: a new reference, or NULL (error set or not: give up). */
static PyObject *decode_value(Decoder *self, DecField *f, const unsigned char *p, Py_ssize_t size, Py_ssize_t *pos) {
    int64_t n;
    switch (f->kind) {
    case K_STRING:
    case K_BYTES:
    case K_DECIMAL: {
        if (!read_long(p, size, pos, &n) || n < 0 || n > size - *pos)
            return NULL;
        const unsigned char *s = p + *pos;
        *pos += n;
        if (f->kind == K_BYTES)
            return PyBytes_FromStringAndSize((const char *)s, n);
        ValueSlot *slot = NULL;
        if (n <= VALUE_KEY_MAX) {
            slot = &f->cache[value_key_hash(s, n) & (self->cache_slots - 1)];
            if (slot->value && slot->len == n && memcmp(slot->key, s, (size_t)n) == 0)
                return Py_NewRef(slot->value);
        }
        PyObject *v;
        if (f->kind == K_STRING) {
            v = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
        } else {
            v = decimal_from_raw(self->decimal_type, s, n, f->scale, f->precision);
            if (!v && !PyErr_Occurred()) {
                PyObject *raw = PyBytes_FromStringAndSize((const char *)s, n);
                if (!raw)
                    return NULL;
                v = PyObject_CallOneArg(f->b, raw);
                Py_DECREF(raw);
            }
        }
        if (v && slot && !PyObject_IS_GC(v)) {
            Py_XSETREF(slot->value, Py_NewRef(v));
            slot->len = n;
            memcpy(slot->key, s, (size_t)n);
        }
        return v;
    }
    case K_LONG:
        if (!read_long(p, size, pos, &n))
            return NULL;
        return PyLong_FromLongLong(n);
    case K_INT:
        if (!read_long(p, size, pos, &n) || n < INT32_MIN || n > INT32_MAX)
            return NULL;
        return PyLong_FromLongLong(n);
    case K_BOOL:
        if (*pos >= size || p[*pos] > 1)
            return NULL;
        return Py_NewRef(p[(*pos)++] ? Py_True : Py_False);
    case K_DOUBLE: {
        if (size - *pos < 8)
            return NULL;
        double x = PyFloat_Unpack8((const char *)p + *pos, 1);
        if (x == -1.0 && PyErr_Occurred())
            return NULL;
        *pos += 8;
        return PyFloat_FromDouble(x);
    }
    case K_TIMESTAMP:
        if (!read_long(p, size, pos, &n))
            return NULL;
        return datetime_from_micros(n);
    case K_ENUM:
        if (!read_long(p, size, pos, &n) || n < 0 || n >= PyTuple_GET_SIZE(f->a))
            return NULL;
        return Py_NewRef(PyTuple_GET_ITEM(f->a, n));
    }
    return NULL;
}

static PyObject *decoder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Decoder *self = (Decoder *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError, "a decoder takes one positional argument, the bytes");
        return NULL;
    }
    PyObject *buf = args[0];
    PyObject *values[MAX_FIELDS] = {NULL};
    PyObject *obj = NULL;
    if (!PyBytes_CheckExact(buf))
        goto fallback;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf), pos = self->header_size;
    if (size < pos)
        goto fallback;
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        DecField *f = &self->fields[i];
        PyObject *v;
        if (f->nullable) {
            if (pos >= size)
                goto fallback;
            unsigned char u = p[pos++];
            if (u == 0) {
                v = Py_NewRef(Py_None);
                goto store;
            }
            if (u != 2)
                goto fallback;
        }
        v = decode_value(self, f, p, size, &pos);
        if (!v)
            goto fallback;
    store:
        if (f->dest < 0) {
            Py_DECREF(v);
        } else {
            Py_XSETREF(values[f->dest], v);
        }
    }
    if (pos != size)
        goto fallback;
    for (Py_ssize_t i = 0; i < self->ndefaults; i++)
        Py_XSETREF(values[self->default_dest[i]], Py_NewRef(self->default_value[i]));
    for (Py_ssize_t i = 0; i < self->nslots; i++)
        if (!values[i])
            goto fallback;
    obj = self->cls->tp_alloc(self->cls, 0);
    if (!obj)
        goto fallback;
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        *(PyObject **)((char *)obj + self->offsets[i]) = values[i]; /* reference moved */
        values[i] = NULL;
    }
    return obj;
fallback:
    for (Py_ssize_t i = 0; i < self->nslots; i++)
        Py_XDECREF(values[i]);
    if (give_up() < 0)
        return NULL;
    return PyObject_CallOneArg(self->fallback, buf);
}

/* Decoder(cls, slot_names, header_size, fields, defaults, fallback, decimal_type, cache_slots)
 *   slot_names:  every field of the dataclass, in its order (the object is built from them)
 *   fields:      ((kind, nullable, dest, a, b, scale, precision), ...) in the writer schema's order
 *   defaults:    ((dest, value), ...) reader fields the writer lacks
 *   cache_slots: entries of each string and decimal field's value table (a power of two) */
static PyObject *decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *cls, *names, *fields, *defaults, *fallback;
    Py_ssize_t header_size, cache_slots;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Decoder takes positional arguments only");
        return NULL;
    }
    PyObject *decimal_type;
    if (!PyArg_ParseTuple(args, "OO!nO!O!OOn", &cls, &PyTuple_Type, &names, &header_size, &PyTuple_Type, &fields,
                          &PyTuple_Type, &defaults, &fallback, &decimal_type, &cache_slots))
        return NULL;
    if (cache_slots < 1 || (cache_slots & (cache_slots - 1)) || cache_slots > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "cache_slots must be a power of two up to 2**20");
        return NULL;
    }
    if (check_class(cls) < 0)
        return NULL;
    if (PyTuple_GET_SIZE(names) > MAX_FIELDS || PyTuple_GET_SIZE(fields) > MAX_FIELDS ||
        PyTuple_GET_SIZE(defaults) > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "too many fields");
        return NULL;
    }
    Decoder *self = (Decoder *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->vectorcall = decoder_vectorcall;
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    self->fallback = Py_NewRef(fallback);
    self->decimal_type = Py_NewRef(decimal_type);
    self->header_size = header_size;
    self->cache_slots = cache_slots;
    self->nslots = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < self->nslots; i++)
        if ((self->offsets[i] = slot_offset(self->cls, PyTuple_GET_ITEM(names, i))) < 0)
            goto fail;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++) {
        DecField *f = &self->fields[i];
        PyObject *a, *b;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "ipnOOii", &f->kind, &f->nullable, &f->dest, &a, &b,
                              &f->scale, &f->precision))
            goto fail;
        if (f->dest >= self->nslots || f->kind == K_NULL || (f->kind == K_ENUM && !PyTuple_CheckExact(a))) {
            PyErr_SetString(PyExc_ValueError, "bad decoder field");
            goto fail;
        }
        f->a = Py_NewRef(a);
        f->b = Py_NewRef(b);
        f->cache = NULL;
        self->nfields = i + 1;
        if ((f->kind == K_STRING || f->kind == K_DECIMAL) &&
            !(f->cache = PyMem_Calloc((size_t)cache_slots, sizeof(ValueSlot)))) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(defaults); i++) {
        PyObject *value;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(defaults, i), "nO", &self->default_dest[i], &value))
            goto fail;
        if (self->default_dest[i] < 0 || self->default_dest[i] >= self->nslots) {
            PyErr_SetString(PyExc_ValueError, "bad default");
            goto fail;
        }
        self->default_value[i] = Py_NewRef(value);
        self->ndefaults = i + 1;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int decoder_traverse(Decoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->cls);
    Py_VISIT(self->fallback);
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        Py_VISIT(self->fields[i].a);
        Py_VISIT(self->fields[i].b);
    }
    for (Py_ssize_t i = 0; i < self->ndefaults; i++)
        Py_VISIT(self->default_value[i]);
    return 0;
}

static int decoder_clear(Decoder *self) {
    Py_CLEAR(self->cls);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->decimal_type);
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        DecField *f = &self->fields[i];
        Py_CLEAR(f->a);
        Py_CLEAR(f->b);
        if (f->cache) {
            for (Py_ssize_t j = 0; j < self->cache_slots; j++)
                Py_CLEAR(f->cache[j].value);
            PyMem_Free(f->cache);
            f->cache = NULL;
        }
    }
    self->nfields = 0;
    for (Py_ssize_t i = 0; i < self->ndefaults; i++)
        Py_CLEAR(self->default_value[i]);
    self->ndefaults = 0;
    return 0;
}

static void decoder_dealloc(Decoder *self) {
    PyObject_GC_UnTrack(self);
    decoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef decoder_members[] = {
    {"fallback", T_OBJECT_EX, offsetof(Decoder, fallback), READONLY, "the Python path this decoder falls back to"},
    {NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backbone._speedups.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Compiled decoder of one writer schema; falls back to the Python decoder.",
    .tp_new = decoder_new,
    .tp_traverse = (traverseproc)decoder_traverse,
    .tp_clear = (inquiry)decoder_clear,
    .tp_dealloc = (destructor)decoder_dealloc,
    .tp_vectorcall_offset = offsetof(Decoder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = decoder_members,
};

/* ------------------------------------------------------------------------------------------
 * Dispatch: AvroCodec.decode, the header lookup in front of the per-schema decoders
 *
 * Dispatch(table, header_size, fallback)(data) is table[data[:header_size]](data) when data
 * is bytes whose header is a key of `table` (bytes -> decoder, copied at construction: the
 * codec builds its table once), else fallback(data), the codec's diagnosing path. The same
 * thing as the Python method without the slice, its hash and a Python frame a record.
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *headers;  /* tuple of bytes, each header_size long */
    PyObject *decoders; /* tuple, same order */
    PyObject *fallback;
    Py_ssize_t header_size;
    Py_ssize_t last; /* index of the last hit: records of one type come in runs */
} Dispatch;

static PyObject *dispatch_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Dispatch *self = (Dispatch *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError, "decode takes one positional argument, the bytes");
        return NULL;
    }
    PyObject *buf = args[0];
    if (PyBytes_CheckExact(buf) && PyBytes_GET_SIZE(buf) >= self->header_size) {
        const char *p = PyBytes_AS_STRING(buf);
        Py_ssize_t n = PyTuple_GET_SIZE(self->headers), last = self->last;
        if (memcmp(PyBytes_AS_STRING(PyTuple_GET_ITEM(self->headers, last)), p, self->header_size) == 0)
            return PyObject_Vectorcall(PyTuple_GET_ITEM(self->decoders, last), args, 1, NULL);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (memcmp(PyBytes_AS_STRING(PyTuple_GET_ITEM(self->headers, i)), p, self->header_size) == 0) {
                self->last = i;
                return PyObject_Vectorcall(PyTuple_GET_ITEM(self->decoders, i), args, 1, NULL);
            }
        }
    }
    return PyObject_Vectorcall(self->fallback, args, 1, NULL);
}

static PyObject *dispatch_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *table, *fallback;
    Py_ssize_t header_size;
    if (!PyArg_ParseTuple(args, "O!nO", &PyDict_Type, &table, &header_size, &fallback))
        return NULL;
    Py_ssize_t n = PyDict_GET_SIZE(table);
    if (n == 0 || header_size <= 0) {
        PyErr_SetString(PyExc_ValueError, "Dispatch needs at least one header and a positive header size");
        return NULL;
    }
    PyObject *headers = PyTuple_New(n), *decoders = PyTuple_New(n);
    if (!headers || !decoders)
        goto error;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(table, &pos, &key, &value)) {
        if (!PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) != header_size) {
            PyErr_Format(PyExc_ValueError, "Dispatch: every key must be %zd bytes", header_size);
            goto error;
        }
        PyTuple_SET_ITEM(headers, i, Py_NewRef(key));
        PyTuple_SET_ITEM(decoders, i, Py_NewRef(value));
        i++;
    }
    Dispatch *self = (Dispatch *)type->tp_alloc(type, 0);
    if (!self)
        goto error;
    self->vectorcall = dispatch_vectorcall;
    self->headers = headers;
    self->decoders = decoders;
    self->fallback = Py_NewRef(fallback);
    self->header_size = header_size;
    self->last = 0;
    return (PyObject *)self;
error:
    Py_XDECREF(headers);
    Py_XDECREF(decoders);
    return NULL;
}

static int dispatch_traverse(Dispatch *self, visitproc visit, void *arg) {
    Py_VISIT(self->headers);
    Py_VISIT(self->decoders);
    Py_VISIT(self->fallback);
    return 0;
}

static int dispatch_clear(Dispatch *self) {
    Py_CLEAR(self->headers);
    Py_CLEAR(self->decoders);
    Py_CLEAR(self->fallback);
    return 0;
}

static void dispatch_dealloc(Dispatch *self) {
    PyObject_GC_UnTrack(self);
    dispatch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef dispatch_members[] = {
    {"fallback", T_OBJECT_EX, offsetof(Dispatch, fallback), READONLY, "the Python path for data no header matches"},
    {NULL},
};

static PyTypeObject DispatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backbone._speedups.Dispatch",
    .tp_basicsize = sizeof(Dispatch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "The decoder of data's header, called on data; `fallback` for anything else.",
    .tp_new = dispatch_new,
    .tp_traverse = (traverseproc)dispatch_traverse,
    .tp_clear = (inquiry)dispatch_clear,
    .tp_dealloc = (destructor)dispatch_dealloc,
    .tp_vectorcall_offset = offsetof(Dispatch, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = dispatch_members,
};

/* ------------------------------------------------------------------------------------------
 * Slots: copy with changes, or build from values, a frozen slotted dataclass
 * ------------------------------------------------------------------------------------------ */

enum { SLOTS_REPLACE = 0, SLOTS_BUILD = 1 };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *cls;
    PyObject *index; /* field name -> position, for keyword changes */
    int mode;
    Py_ssize_t n;
    Py_ssize_t offsets[MAX_FIELDS];
} Slots;

static inline PyObject **slot_at(PyObject *obj, Py_ssize_t offset) { return (PyObject **)((char *)obj + offset); }

/* mode REPLACE: f(obj, **changes) -> copy of obj with the changes (obj must be a cls);
 * mode BUILD:   f(*values) -> cls with the n values in field order. */
static PyObject *slots_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Slots *self = (Slots *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (self->mode == SLOTS_BUILD) {
        if (nargs != self->n || nkw) {
            PyErr_Format(PyExc_TypeError, "building %s takes %zd positional values, got %zd", self->cls->tp_name,
                         self->n, nargs);
            return NULL;
        }
    } else if (nargs != 1 || !Py_IS_TYPE(args[0], self->cls)) {
        PyErr_Format(PyExc_TypeError, "replace takes one %s and keyword changes", self->cls->tp_name);
        return NULL;
    }
    PyObject *obj = self->cls->tp_alloc(self->cls, 0);
    if (!obj)
        return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyObject *v = self->mode == SLOTS_BUILD ? args[i] : *slot_at(args[0], self->offsets[i]);
        if (!v) {
            PyErr_Format(PyExc_AttributeError, "%s has an unset field", self->cls->tp_name);
            Py_DECREF(obj);
            return NULL;
        }
        *slot_at(obj, self->offsets[i]) = Py_NewRef(v);
    }
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        PyObject *pos = PyDict_GetItemWithError(self->index, name);
        if (!pos) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "replace() got an unexpected keyword argument '%U'", name);
            Py_DECREF(obj);
            return NULL;
        }
        PyObject **slot = slot_at(obj, self->offsets[PyLong_AsSsize_t(pos)]);
        Py_SETREF(*slot, Py_NewRef(args[nargs + k]));
    }
    return obj;
}

/* Slots(cls, names, mode): names = every field of cls in order, each a plain slot. */
static PyObject *slots_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *cls, *names;
    int mode;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Slots takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!i", &cls, &PyTuple_Type, &names, &mode))
        return NULL;
    if (check_class(cls) < 0)
        return NULL;
    if (PyTuple_GET_SIZE(names) > MAX_FIELDS || (mode != SLOTS_REPLACE && mode != SLOTS_BUILD)) {
        PyErr_SetString(PyExc_ValueError, "too many fields, or an unknown mode");
        return NULL;
    }
    Slots *self = (Slots *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->vectorcall = slots_vectorcall;
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    self->mode = mode;
    self->index = PyDict_New();
    if (!self->index)
        goto fail;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if ((self->offsets[i] = slot_offset(self->cls, name)) < 0)
            goto fail;
        PyObject *pos = PyLong_FromSsize_t(i);
        if (!pos || PyDict_SetItem(self->index, name, pos) < 0) {
            Py_XDECREF(pos);
            goto fail;
        }
        Py_DECREF(pos);
        self->n = i + 1;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int slots_traverse(Slots *self, visitproc visit, void *arg) {
    Py_VISIT(self->cls);
    Py_VISIT(self->index);
    return 0;
}

static int slots_clear(Slots *self) {
    Py_CLEAR(self->cls);
    Py_CLEAR(self->index);
    return 0;
}

static void slots_dealloc(Slots *self) {
    PyObject_GC_UnTrack(self);
    slots_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject SlotsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backbone._speedups.Slots",
    .tp_basicsize = sizeof(Slots),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Copy-with-changes (mode 0) or build-from-values (mode 1) of one slotted class.",
    .tp_new = slots_new,
    .tp_traverse = (traverseproc)slots_traverse,
    .tp_clear = (inquiry)slots_clear,
    .tp_dealloc = (destructor)slots_dealloc,
    .tp_vectorcall_offset = offsetof(Slots, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* ------------------------------------------------------------------------------------------
 * OrderMachine: the common transitions of the order state machine (backbone.domain.order_state)
 *
 * machine(state, event) is order_state._next(state, event). The C code takes only the plain
 * cases: creating an order, a fill that is not on a FOK order, and every event type that does
 * not touch the fills (acknowledgements, cancel and replace requests and their answers, the
 * replace itself, cancels, expiries), each with exactly typed fields. Everything else (busts,
 * corrections, FOK fills, a sequence or duplicate problem, a field of another type, any
 * arithmetic that would round) goes to the Python path, which decides or raises the state
 * machine's typed error. Decimal arithmetic is done by the same decimal contexts' methods the
 * Python path runs under (order_fields._EXACT_CTX and _QUOTIENT_CTX), in the same order, and
 * the status resolvers are the Python functions themselves; so a result equals the Python
 * path's, field for field and exponent for exponent (tests compare both on random streams).
 * ------------------------------------------------------------------------------------------ */

enum { OS_ORDER_ID, OS_ACCOUNT, OS_SYMBOL, OS_SIDE, OS_ORDER_TYPE, OS_TIF, OS_CL_ORD_ID, OS_STATUS, OS_ORDER_QTY,
       OS_PRICE, OS_STOP_PRICE, OS_CUM_QTY, OS_LEAVES_QTY, OS_AVG_PX, OS_SEQ, OS_FIRST_TIME, OS_LAST_TIME, OS_FILLS,
       OS_PRIOR_STATUS, OS_EVENT_IDS, OS_EXEC_IDS, OS_N };
enum { LF_EXEC_ID, LF_QTY, LF_PX, LF_BUSTED, LF_RESTATED_BY, LF_N };
enum { EV_EVENT_ID, EV_EVENT_TYPE, EV_EVENT_TIME, EV_SEQ, EV_ACCOUNT, EV_SYMBOL, EV_SIDE, EV_ORDER_TYPE, EV_TIF,
       EV_ORDER_ID, EV_CL_ORD_ID, EV_ORDER_QTY, EV_EXEC_ID, EV_PRICE, EV_STOP_PRICE, EV_LAST_QTY, EV_LAST_PX, EV_N };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *state_cls, *fill_cls, *event_cls, *event_type_cls, *status_cls, *decimal_cls;
    Py_ssize_t os[OS_N], lf[LF_N], ev[EV_N];
    PyObject *fallback;
    PyObject *zero, *quantum, *zero_at_scale;
    PyObject *x_add, *x_sub, *x_mul, *x_rem;               /* the exact context's methods */
    PyObject *q_add, *q_sub, *q_mul, *q_divmod, *q_minus;  /* the quotient context's */
    PyObject *transitions, *creating, *terminal, *pending, *needs_exec_id, *python_only;
    PyObject *filled, *fok, *by_quantity, *replaced, *by_fill;
    PyObject *s_new, *s_partially_filled, *s_filled;
    PyObject *int0, *int1, *int2, *empty_tuple, *empty_frozenset, *s_is_finite;
} Machine;

#define SLOT(obj, off) (*slot_at((obj), (off)))

static PyObject *call1(PyObject *fn, PyObject *a) { return PyObject_Vectorcall(fn, &a, 1, NULL); }

static PyObject *call2(PyObject *fn, PyObject *a, PyObject *b) {
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(fn, args, 2, NULL);
}

/* 1: an exact Decimal that is finite; 0: not; -1: error */
static int exact_finite(PyTypeObject *decimal_cls, PyObject *s_is_finite, PyObject *v) {
    if (!v || !Py_IS_TYPE(v, decimal_cls))
        return 0;
    PyObject *r = PyObject_CallMethodNoArgs(v, s_is_finite);
    if (!r)
        return -1;
    int out = r == Py_True;
    Py_DECREF(r);
    return out;
}

static int finite_decimal(Machine *m, PyObject *v) { return exact_finite(m->decimal_cls, m->s_is_finite, v); }

/* order_fields.positive_quantity without its error: 1 when it accepts `v` */
static int positive_decimal(Machine *m, PyObject *v) {
    int ok = finite_decimal(m, v);
    return ok == 1 ? PyObject_RichCompareBool(v, m->int0, Py_GT) : ok;
}

static int optional_price(Machine *m, PyObject *v) { return v == Py_None ? 1 : finite_decimal(m, v); }

/* order_fields.round_half_even(numerator, denominator) for denominator > 0; NULL: give up */
static PyObject *round_half_even(Machine *m, PyObject *numerator, PyObject *denominator) {
    PyObject *unit = NULL, *pair = NULL, *whole = NULL, *rest = NULL, *twice = NULL, *tmp = NULL, *out = NULL;
    if (PyObject_RichCompareBool(denominator, m->int0, Py_GT) != 1)
        return NULL;
    if (!(unit = call2(m->q_mul, denominator, m->quantum)) || !(pair = call2(m->q_divmod, numerator, unit)))
        goto done;
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
        goto done;
    whole = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    rest = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
    int nonzero = PyObject_IsTrue(rest);
    if (nonzero < 0)
        goto done;
    if (nonzero) {
        if (!(twice = call2(m->q_add, rest, rest)))
            goto done;
        int negative = PyObject_RichCompareBool(twice, m->int0, Py_LT);
        if (negative < 0)
            goto done;
        if (negative) {
            if (!(tmp = call1(m->q_minus, twice)))
                goto done;
            Py_SETREF(twice, tmp);
            tmp = NULL;
        }
        int up = PyObject_RichCompareBool(twice, unit, Py_GT);
        if (up < 0)
            goto done;
        if (!up) {
            int tie = PyObject_RichCompareBool(twice, unit, Py_EQ);
            if (tie < 0)
                goto done;
            if (tie) {
                if (!(tmp = call2(m->x_rem, whole, m->int2)))  /* `whole % 2` in the exact context */
                    goto done;
                up = PyObject_IsTrue(tmp);
                Py_CLEAR(tmp);
                if (up < 0)
                    goto done;
            }
        }
        if (up) {
            int positive = PyObject_RichCompareBool(rest, m->int0, Py_GT);
            if (positive < 0 || !(tmp = call2(positive ? m->q_add : m->q_sub, whole, m->int1)))
                goto done;
            Py_SETREF(whole, tmp);
            tmp = NULL;
        }
    }
    int nonzero_whole = PyObject_IsTrue(whole);
    if (nonzero_whole < 0)
        goto done;
    out = nonzero_whole ? call2(m->q_mul, whole, m->quantum) : Py_NewRef(m->zero_at_scale);
done:
    Py_XDECREF(unit);
    Py_XDECREF(pair);
    Py_XDECREF(whole);
    Py_XDECREF(rest);
    Py_XDECREF(twice);
    Py_XDECREF(tmp);
    return out;
}

/* cum_qty and avg_px of `fills` (order_state._cum and _avg_px); 0 ok, -1 give up */
static int restate(Machine *m, PyObject *fills, PyObject **cum_out, PyObject **avg_out) {
    PyObject *cum = Py_NewRef(m->zero), *notional = Py_NewRef(m->zero), *tmp = NULL, *product = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fills);
    for (Py_ssize_t i = 0; i < n; i++) {  /* _cum: ZERO + qty + ... over the live fills, in order */
        PyObject *f = PyTuple_GET_ITEM(fills, i);
        if (!Py_IS_TYPE(f, m->fill_cls))
            goto fail;
        int busted = PyObject_IsTrue(SLOT(f, m->lf[LF_BUSTED]));
        if (busted < 0)
            goto fail;
        if (!busted) {
            if (!(tmp = call2(m->x_add, cum, SLOT(f, m->lf[LF_QTY]))))
                goto fail;
            Py_SETREF(cum, tmp);
        }
    }
    int flat = PyObject_RichCompareBool(cum, m->int0, Py_EQ);
    if (flat < 0)
        goto fail;
    if (flat) {
        *avg_out = Py_NewRef(m->zero);
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {  /* _avg_px: ZERO + qty * px + ... over the same fills */
            PyObject *f = PyTuple_GET_ITEM(fills, i);
            int busted = PyObject_IsTrue(SLOT(f, m->lf[LF_BUSTED]));
            if (busted < 0)
                goto fail;
            if (!busted) {
                if (!(product = call2(m->x_mul, SLOT(f, m->lf[LF_QTY]), SLOT(f, m->lf[LF_PX]))) ||
                    !(tmp = call2(m->x_add, notional, product)))
                    goto fail;
                Py_CLEAR(product);
                Py_SETREF(notional, tmp);
            }
        }
        if (!(*avg_out = round_half_even(m, notional, cum)))
            goto fail;
    }
    Py_DECREF(notional);
    *cum_out = cum;
    return 0;
fail:
    Py_XDECREF(product);
    Py_DECREF(cum);
    Py_DECREF(notional);
    return -1;
}

/* order_state.by_quantity(state, cum, order_qty): NEW, PARTIALLY_FILLED or FILLED */
static PyObject *status_by_quantity(Machine *m, PyObject *cum, PyObject *order_qty) {
    int flat = PyObject_RichCompareBool(cum, m->int0, Py_EQ);
    if (flat < 0)
        return NULL;
    if (flat)
        return Py_NewRef(m->s_new);
    int full = PyObject_RichCompareBool(cum, order_qty, Py_GE);
    if (full < 0)
        return NULL;
    return Py_NewRef(full ? m->s_filled : m->s_partially_filled);
}

/* target(state, cum, order_qty) for a resolver of TRANSITIONS: by_quantity and by_fill (the
 * ones the plain transitions use) in C, the same comparisons in the same order; others called */
static PyObject *resolve(Machine *m, PyObject *target, PyObject *state, PyObject *cum, PyObject *order_qty) {
    if (target == m->by_quantity)
        return status_by_quantity(m, cum, order_qty);
    if (target == m->by_fill) {  /* a pending request stays pending until the order is filled */
        PyObject *before = SLOT(state, m->os[OS_STATUS]);
        int pending = PySet_Contains(m->pending, before);
        if (pending < 0)
            return NULL;
        if (pending) {
            int open = PyObject_RichCompareBool(cum, order_qty, Py_LT);
            if (open < 0)
                return NULL;
            if (open)
                return Py_NewRef(before);
        }
        return status_by_quantity(m, cum, order_qty);
    }
    PyObject *args[3] = {state, cum, order_qty};
    return PyObject_Vectorcall(target, args, 3, NULL);
}

/* The next state, or NULL to give up (with or without an error set). */
static PyObject *machine_fast(Machine *m, PyObject *state, PyObject *ev) {
    for (int i = 0; i < EV_N; i++)
        if (!SLOT(ev, m->ev[i]))
            return NULL;
    PyObject *etype = SLOT(ev, m->ev[EV_EVENT_TYPE]), *eseq = SLOT(ev, m->ev[EV_SEQ]);
    PyObject *exec_id = SLOT(ev, m->ev[EV_EXEC_ID]);
    if (!Py_IS_TYPE(etype, m->event_type_cls) || !PyLong_CheckExact(eseq))
        return NULL;
    PyObject *vals[OS_N];
    PyObject *fills = NULL, *fill = NULL, *cum = NULL, *avg = NULL, *status = NULL, *leaves = NULL, *prior = NULL,
             *event_ids = NULL, *exec_ids = NULL, *tmp = NULL, *key = NULL, *out = NULL;
    PyObject *base_event_ids, *base_exec_ids;
    if (state == Py_None) {  /* _create */
        PyObject *created = PyDict_GetItemWithError(m->creating, etype);
        if (!created || PyObject_RichCompareBool(eseq, m->int1, Py_EQ) != 1 ||
            positive_decimal(m, SLOT(ev, m->ev[EV_ORDER_QTY])) != 1 ||
            optional_price(m, SLOT(ev, m->ev[EV_PRICE])) != 1 || optional_price(m, SLOT(ev, m->ev[EV_STOP_PRICE])) != 1)
            goto done;
        static const int from_event[][2] = {
            {OS_ORDER_ID, EV_ORDER_ID}, {OS_ACCOUNT, EV_ACCOUNT}, {OS_SYMBOL, EV_SYMBOL}, {OS_SIDE, EV_SIDE},
            {OS_ORDER_TYPE, EV_ORDER_TYPE}, {OS_TIF, EV_TIF}, {OS_CL_ORD_ID, EV_CL_ORD_ID},
            {OS_ORDER_QTY, EV_ORDER_QTY}, {OS_PRICE, EV_PRICE}, {OS_STOP_PRICE, EV_STOP_PRICE},
            {OS_FIRST_TIME, EV_EVENT_TIME}};
        for (size_t i = 0; i < sizeof from_event / sizeof from_event[0]; i++)
            vals[from_event[i][0]] = SLOT(ev, m->ev[from_event[i][1]]);
        status = Py_NewRef(created);
        fills = Py_NewRef(m->empty_tuple);
        cum = Py_NewRef(m->zero);
        avg = Py_NewRef(m->zero);
        base_event_ids = base_exec_ids = m->empty_frozenset;
        if (PySet_Contains(m->pending, status) != 0)  /* never a creating status; by_quantity would need `blank` */
            goto done;
    } else {  /* _advance */
        for (int i = 0; i < OS_N; i++)
            if (!(vals[i] = SLOT(state, m->os[i])))
                goto done;
        PyObject *sstatus = vals[OS_STATUS];
        base_event_ids = vals[OS_EVENT_IDS];
        base_exec_ids = vals[OS_EXEC_IDS];
        if (!Py_IS_TYPE(sstatus, m->status_cls) || !PyLong_CheckExact(vals[OS_SEQ]) ||
            !PyFrozenSet_CheckExact(base_event_ids) || !PyFrozenSet_CheckExact(base_exec_ids) ||
            !PyTuple_CheckExact(vals[OS_FILLS]))
            goto done;
        /* _check_sequence */
        if (PyObject_RichCompareBool(SLOT(ev, m->ev[EV_ORDER_ID]), vals[OS_ORDER_ID], Py_EQ) != 1 ||
            PySet_Contains(base_event_ids, SLOT(ev, m->ev[EV_EVENT_ID])) != 0)
            goto done;
        if (!(tmp = PyNumber_Add(vals[OS_SEQ], m->int1)) || PyObject_RichCompareBool(eseq, tmp, Py_EQ) != 1)
            goto done;
        Py_CLEAR(tmp);
        if (!(key = PyTuple_Pack(2, sstatus, etype)))
            goto done;
        PyObject *target = PyDict_GetItemWithError(m->transitions, key);
        if (!target)
            goto done;
        if (PySet_Contains(m->python_only, etype) != 0)  /* busts, corrections */
            goto done;
        int needs = PySet_Contains(m->needs_exec_id, etype);
        if (needs < 0 || (needs && exec_id == Py_None))
            goto done;
        if (exec_id != Py_None && PySet_Contains(base_exec_ids, exec_id) != 0)
            goto done;
        if (etype == m->filled) {  /* _add_fill */
            PyObject *qty = SLOT(ev, m->ev[EV_LAST_QTY]), *px = SLOT(ev, m->ev[EV_LAST_PX]);
            if (!PyUnicode_CheckExact(exec_id) || positive_decimal(m, qty) != 1 || finite_decimal(m, px) != 1 ||
                PyObject_RichCompareBool(vals[OS_TIF], m->fok, Py_EQ) != 0)
                goto done;
            if (!(fill = m->fill_cls->tp_alloc(m->fill_cls, 0)))
                goto done;
            PyObject *fill_vals[LF_N] = {exec_id, qty, px, Py_False, m->empty_tuple};
            for (int i = 0; i < LF_N; i++)
                SLOT(fill, m->lf[i]) = Py_NewRef(fill_vals[i]);
            Py_ssize_t n = PyTuple_GET_SIZE(vals[OS_FILLS]);
            if (!(fills = PyTuple_New(n + 1)))
                goto done;
            for (Py_ssize_t i = 0; i < n; i++)
                PyTuple_SET_ITEM(fills, i, Py_NewRef(PyTuple_GET_ITEM(vals[OS_FILLS], i)));
            PyTuple_SET_ITEM(fills, n, Py_NewRef(fill));
            if (restate(m, fills, &cum, &avg) < 0)
                goto done;
        } else if (needs) {  /* a bust or correction: the Python path */
            goto done;
        } else {
            if (etype == m->replaced) {  /* _replace_terms: the new terms, checked; the fills stay */
                PyObject *qty = SLOT(ev, m->ev[EV_ORDER_QTY]), *price = SLOT(ev, m->ev[EV_PRICE]),
                         *stop = SLOT(ev, m->ev[EV_STOP_PRICE]);
                if (positive_decimal(m, qty) != 1 || optional_price(m, price) != 1 || optional_price(m, stop) != 1 ||
                    PyObject_RichCompareBool(qty, vals[OS_CUM_QTY], Py_LT) != 0)  /* replace_below_cum */
                    goto done;
                vals[OS_ORDER_QTY] = qty;
                vals[OS_PRICE] = price;
                vals[OS_STOP_PRICE] = stop;
                vals[OS_ORDER_TYPE] = SLOT(ev, m->ev[EV_ORDER_TYPE]);
                vals[OS_TIF] = SLOT(ev, m->ev[EV_TIF]);
                vals[OS_CL_ORD_ID] = SLOT(ev, m->ev[EV_CL_ORD_ID]);
            }
            fills = Py_NewRef(vals[OS_FILLS]);
            cum = Py_NewRef(vals[OS_CUM_QTY]);
            avg = Py_NewRef(vals[OS_AVG_PX]);
        }
        if (PyObject_TypeCheck(target, m->status_cls))
            status = Py_NewRef(target);
        else if (!(status = resolve(m, target, state, cum, vals[OS_ORDER_QTY])))
            goto done;
    }
    /* _settle */
    if (PyObject_RichCompareBool(cum, vals[OS_ORDER_QTY], Py_GT) != 0)
        goto done;  /* overfill (or an error): the Python path names it */
    int terminal = PySet_Contains(m->terminal, status);
    if (terminal < 0 || !(leaves = terminal ? Py_NewRef(m->zero) : call2(m->x_sub, vals[OS_ORDER_QTY], cum)))
        goto done;
    int pending = PySet_Contains(m->pending, status);
    if (pending < 0)
        goto done;
    if (pending) {
        if (!(prior = status_by_quantity(m, cum, vals[OS_ORDER_QTY])))
            goto done;
    } else {
        prior = Py_NewRef(Py_None);
    }
    /* `base | {id}`: a copy of base, then the id added to the copy while nothing else holds it */
    if (!(event_ids = PyFrozenSet_New(base_event_ids)) || PySet_Add(event_ids, SLOT(ev, m->ev[EV_EVENT_ID])) < 0)
        goto done;
    if (exec_id == Py_None)
        exec_ids = Py_NewRef(base_exec_ids);  /* `base | set()`: an equal frozenset */
    else if (!(exec_ids = PyFrozenSet_New(base_exec_ids)) || PySet_Add(exec_ids, exec_id) < 0)
        goto done;
    vals[OS_STATUS] = status;
    vals[OS_CUM_QTY] = cum;
    vals[OS_LEAVES_QTY] = leaves;
    vals[OS_AVG_PX] = avg;
    vals[OS_SEQ] = eseq;
    vals[OS_LAST_TIME] = SLOT(ev, m->ev[EV_EVENT_TIME]);
    vals[OS_FILLS] = fills;
    vals[OS_PRIOR_STATUS] = prior;
    vals[OS_EVENT_IDS] = event_ids;
    vals[OS_EXEC_IDS] = exec_ids;
    if (!(out = m->state_cls->tp_alloc(m->state_cls, 0)))
        goto done;
    for (int i = 0; i < OS_N; i++)
        SLOT(out, m->os[i]) = Py_NewRef(vals[i]);
done:
    Py_XDECREF(fills);
    Py_XDECREF(fill);
    Py_XDECREF(cum);
    Py_XDECREF(avg);
    Py_XDECREF(status);
    Py_XDECREF(leaves);
    Py_XDECREF(prior);
    Py_XDECREF(event_ids);
    Py_XDECREF(exec_ids);
    Py_XDECREF(tmp);
    Py_XDECREF(key);
    return out;
}

static PyObject *machine_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Machine *m = (Machine *)callable;
    if (PyVectorcall_NARGS(nargsf) != 2 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "OrderMachine takes (state or None, event)");
        return NULL;
    }
    PyObject *out = NULL;
    if ((args[0] == Py_None || Py_IS_TYPE(args[0], m->state_cls)) && Py_IS_TYPE(args[1], m->event_cls))
        out = machine_fast(m, args[0], args[1]);
    if (out)
        return out;
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        PyErr_Clear();
    }
    return PyObject_Vectorcall(m->fallback, args, 2, NULL);
}

static int offsets_of(PyTypeObject *cls, PyObject *names, Py_ssize_t *offsets, Py_ssize_t n) {
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd field names", cls->tp_name, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if ((offsets[i] = slot_offset(cls, PyTuple_GET_ITEM(names, i))) < 0)
            return -1;
    return 0;
}

static PyObject *method_of(PyObject *obj, const char *name) { return PyObject_GetAttrString(obj, name); }

/* OrderMachine(state_cls, state_fields, fill_cls, fill_fields, event_cls, event_fields, event_type_cls,
 *              status_cls, decimal_cls, fallback, zero, quantum, zero_at_scale, exact_ctx, quotient_ctx,
 *              transitions, creating, terminal, pending, needs_exec_id, python_only, filled, fok, by_quantity,
 *              replaced, by_fill)
 * by_quantity, by_fill: the resolvers the C code runs itself (status_by_quantity, resolve), with
 * the statuses it reads from status_cls (NEW, PARTIALLY_FILLED, FILLED).
 * python_only: the event types whose effects only the Python path applies.
 * The field names are those the enums above list, in that order. */
static PyObject *machine_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *state_cls, *state_fields, *fill_cls, *fill_fields, *event_cls, *event_fields, *event_type_cls,
        *status_cls, *decimal_cls, *fallback, *zero, *quantum, *zero_at_scale, *exact_ctx, *quotient_ctx,
        *transitions, *creating, *terminal, *pending, *needs_exec_id, *python_only, *filled, *fok, *by_quantity,
        *replaced, *by_fill;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "OrderMachine takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!OO!OO!OO!O!O!OOOOOOO!O!O!O!O!O!OOOOO", &PyType_Type, &state_cls, &state_fields,
                          &PyType_Type, &fill_cls, &fill_fields, &PyType_Type, &event_cls, &event_fields,
                          &PyType_Type, &event_type_cls, &PyType_Type, &status_cls, &PyType_Type, &decimal_cls,
                          &fallback, &zero, &quantum, &zero_at_scale, &exact_ctx, &quotient_ctx, &PyDict_Type,
                          &transitions, &PyDict_Type, &creating, &PyFrozenSet_Type, &terminal, &PyFrozenSet_Type,
                          &pending, &PyFrozenSet_Type, &needs_exec_id, &PyFrozenSet_Type, &python_only, &filled, &fok,
                          &by_quantity, &replaced, &by_fill))
        return NULL;
    if (check_class(state_cls) < 0 || check_class(fill_cls) < 0 || check_class(event_cls) < 0)
        return NULL;
    Machine *m = (Machine *)type->tp_alloc(type, 0);
    if (!m)
        return NULL;
    m->vectorcall = machine_vectorcall;
    m->state_cls = (PyTypeObject *)Py_NewRef(state_cls);
    m->fill_cls = (PyTypeObject *)Py_NewRef(fill_cls);
    m->event_cls = (PyTypeObject *)Py_NewRef(event_cls);
    m->event_type_cls = (PyTypeObject *)Py_NewRef(event_type_cls);
    m->status_cls = (PyTypeObject *)Py_NewRef(status_cls);
    m->decimal_cls = (PyTypeObject *)Py_NewRef(decimal_cls);
    m->fallback = Py_NewRef(fallback);
    m->zero = Py_NewRef(zero);
    m->quantum = Py_NewRef(quantum);
    m->zero_at_scale = Py_NewRef(zero_at_scale);
    m->transitions = Py_NewRef(transitions);
    m->creating = Py_NewRef(creating);
    m->terminal = Py_NewRef(terminal);
    m->pending = Py_NewRef(pending);
    m->needs_exec_id = Py_NewRef(needs_exec_id);
    m->python_only = Py_NewRef(python_only);
    m->filled = Py_NewRef(filled);
    m->fok = Py_NewRef(fok);
    m->by_quantity = Py_NewRef(by_quantity);
    m->replaced = Py_NewRef(replaced);
    m->by_fill = Py_NewRef(by_fill);
    m->s_new = PyObject_GetAttrString(status_cls, "NEW");
    m->s_partially_filled = PyObject_GetAttrString(status_cls, "PARTIALLY_FILLED");
    m->s_filled = PyObject_GetAttrString(status_cls, "FILLED");
    m->empty_tuple = PyTuple_New(0);
    m->empty_frozenset = PyFrozenSet_New(NULL);
    m->int0 = PyLong_FromLong(0);
    m->int1 = PyLong_FromLong(1);
    m->int2 = PyLong_FromLong(2);
    m->s_is_finite = PyUnicode_InternFromString("is_finite");
    m->x_add = method_of(exact_ctx, "add");
    m->x_sub = method_of(exact_ctx, "subtract");
    m->x_mul = method_of(exact_ctx, "multiply");
    m->x_rem = method_of(exact_ctx, "remainder");
    m->q_add = method_of(quotient_ctx, "add");
    m->q_sub = method_of(quotient_ctx, "subtract");
    m->q_mul = method_of(quotient_ctx, "multiply");
    m->q_divmod = method_of(quotient_ctx, "divmod");
    m->q_minus = method_of(quotient_ctx, "minus");
    if (!m->s_new || !m->s_partially_filled || !m->s_filled || !m->empty_tuple || !m->empty_frozenset || !m->int0 || !m->int1 || !m->int2 || !m->s_is_finite ||
        !m->x_add || !m->x_sub || !m->x_mul || !m->x_rem || !m->q_add || !m->q_sub || !m->q_mul ||
        !m->q_divmod || !m->q_minus ||
        offsets_of(m->state_cls, state_fields, m->os, OS_N) < 0 || offsets_of(m->fill_cls, fill_fields, m->lf, LF_N) < 0 ||
        offsets_of(m->event_cls, event_fields, m->ev, EV_N) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return (PyObject *)m;
}

static int machine_traverse(Machine *m, visitproc visit, void *arg) {
    Py_VISIT(m->state_cls);
    Py_VISIT(m->fill_cls);
    Py_VISIT(m->event_cls);
    Py_VISIT(m->event_type_cls);
    Py_VISIT(m->status_cls);
    Py_VISIT(m->decimal_cls);
    Py_VISIT(m->fallback);
    Py_VISIT(m->transitions);
    Py_VISIT(m->creating);
    Py_VISIT(m->by_quantity);
    Py_VISIT(m->replaced);
    Py_VISIT(m->by_fill);
    Py_VISIT(m->s_new);
    Py_VISIT(m->s_partially_filled);
    Py_VISIT(m->s_filled);
    Py_VISIT(m->x_add);
    Py_VISIT(m->x_sub);
    Py_VISIT(m->x_mul);
    Py_VISIT(m->x_rem);
    Py_VISIT(m->q_add);
    Py_VISIT(m->q_sub);
    Py_VISIT(m->q_mul);
    Py_VISIT(m->q_divmod);
    Py_VISIT(m->q_minus);
    return 0;
}

static int machine_clear(Machine *m) {
    Py_CLEAR(m->state_cls);
    Py_CLEAR(m->fill_cls);
    Py_CLEAR(m->event_cls);
    Py_CLEAR(m->event_type_cls);
    Py_CLEAR(m->status_cls);
    Py_CLEAR(m->decimal_cls);
    Py_CLEAR(m->fallback);
    Py_CLEAR(m->zero);
    Py_CLEAR(m->quantum);
    Py_CLEAR(m->zero_at_scale);
    Py_CLEAR(m->x_add);
    Py_CLEAR(m->x_sub);
    Py_CLEAR(m->x_mul);
    Py_CLEAR(m->x_rem);
    Py_CLEAR(m->q_add);
    Py_CLEAR(m->q_sub);
    Py_CLEAR(m->q_mul);
    Py_CLEAR(m->q_divmod);
    Py_CLEAR(m->q_minus);
    Py_CLEAR(m->transitions);
    Py_CLEAR(m->creating);
    Py_CLEAR(m->terminal);
    Py_CLEAR(m->pending);
    Py_CLEAR(m->needs_exec_id);
    Py_CLEAR(m->python_only);
    Py_CLEAR(m->filled);
    Py_CLEAR(m->fok);
    Py_CLEAR(m->by_quantity);
    Py_CLEAR(m->replaced);
    Py_CLEAR(m->by_fill);
    Py_CLEAR(m->s_new);
    Py_CLEAR(m->s_partially_filled);
    Py_CLEAR(m->s_filled);
    Py_CLEAR(m->int0);
    Py_CLEAR(m->int1);
    Py_CLEAR(m->int2);
    Py_CLEAR(m->empty_tuple);
    Py_CLEAR(m->empty_frozenset);
    Py_CLEAR(m->s_is_finite);
    return 0;
}

static void machine_dealloc(Machine *m) {
    PyObject_GC_UnTrack(m);
    machine_clear(m);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyMemberDef machine_members[] = {
    {"fallback", T_OBJECT_EX, offsetof(Machine, fallback), READONLY, "the Python path this machine falls back to"},
    {NULL},
};

static PyTypeObject MachineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backbone._speedups.OrderMachine",
    .tp_basicsize = sizeof(Machine),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "order_state._next for the plain transitions; everything else goes to `fallback`.",
    .tp_new = machine_new,
    .tp_traverse = (traverseproc)machine_traverse,
    .tp_clear = (inquiry)machine_clear,
    .tp_dealloc = (destructor)machine_dealloc,
    .tp_vectorcall_offset = offsetof(Machine, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = machine_members,
};

/* ------------------------------------------------------------------------------------------
 * PositionStep: one netting step of a position (backbone.domain.positions._apply)
 *
 * step(position, fill) is positions._apply_fill_python(position, fill): the position after
 * `fill`, a fill whose exec id the caller knows is not live (no duplicate scan). The C code
 * takes the plain case: a Position whose fills and prior states are Histories (or tuples), a Fill of
 * exactly typed fields (Side member, finite Decimals, qty > 0, commission >= 0, an aware
 * datetime) for the same account and symbol. It runs the same decimal operations in the same
 * order as the Python path, in the same context (positions._CTX made current, as the Python
 * path does, and the caller's context restored after), so each result equals the Python
 * path's, exponent included. Anything else, and any decimal signal (a result that would round),
 * goes to `fallback`, the Python path, which computes it or raises the PositionError.
 * ------------------------------------------------------------------------------------------ */

enum { PS_ACCOUNT, PS_SYMBOL, PS_QTY, PS_AVG_PX, PS_REALIZED, PS_REALIZED_C, PS_OPEN_C, PS_COMMISSION, PS_LAST,
       PS_COUNT, PS_FILLS, PS_PRIORS, PS_N };
enum { FL_EXEC_ID, FL_ACCOUNT, FL_SYMBOL, FL_SIDE, FL_QTY, FL_PRICE, FL_COMMISSION, FL_TIME, FL_N };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *position_cls, *fill_cls, *history_cls, *decimal_cls;
    Py_ssize_t ps[PS_N], fl[FL_N], h_items, h_n;
    PyObject *fallback, *ctx, *rounding_ctx, *setcontext, *getcontext;
    PyObject *zero, *flat_avg_px, *avg_quantum, *commission_quantum, *half_even;
    PyObject *buy, *sell, *sell_short;
    PyObject *int1, *int2, *s_is_finite, *s_quantize;
} PositionStep;

static int step_finite(PositionStep *s, PyObject *v) { return exact_finite(s->decimal_cls, s->s_is_finite, v); }

/* positions._div_round: numerator / denominator rounded half-even to a multiple of quantum */
static PyObject *step_div_round(PositionStep *s, PyObject *numerator, PyObject *denominator, PyObject *quantum) {
    PyObject *unit = NULL, *pair = NULL, *whole = NULL, *sum = NULL, *twice = NULL, *rem = NULL, *out = NULL;
    if (!(unit = PyNumber_Multiply(denominator, quantum)) || !(pair = PyNumber_Divmod(numerator, unit)))
        goto done;
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "divmod did not give a pair");
        goto done;
    }
    whole = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    PyObject *rest = PyTuple_GET_ITEM(pair, 1);  /* whole truncated toward zero, rest has its sign */
    int nonzero = PyObject_IsTrue(rest);
    if (nonzero < 0)
        goto done;
    if (nonzero) {
        int positive = PyObject_RichCompareBool(rest, s->zero, Py_GT);
        if (positive < 0 || !(sum = PyNumber_Add(rest, rest)))
            goto done;
        if (!(twice = positive ? Py_NewRef(sum) : PyNumber_Negative(sum)))
            goto done;
        int up = PyObject_RichCompareBool(twice, unit, Py_GT);
        if (up == 0) {
            up = PyObject_RichCompareBool(twice, unit, Py_EQ);
            if (up == 1) {
                if (!(rem = PyNumber_Remainder(whole, s->int2)))
                    goto done;
                up = PyObject_IsTrue(rem);
            }
        }
        if (up < 0)
            goto done;
        if (up) {
            PyObject *moved = positive ? PyNumber_Add(whole, s->int1) : PyNumber_Subtract(whole, s->int1);
            if (!moved)
                goto done;
            Py_SETREF(whole, moved);
        }
    }
    out = PyNumber_Multiply(whole, quantum);
done:
    Py_XDECREF(unit);
    Py_XDECREF(pair);
    Py_XDECREF(whole);
    Py_XDECREF(sum);
    Py_XDECREF(twice);
    Py_XDECREF(rem);
    return out;
}

/* px.quantize(AVG_QUANTUM, ROUND_HALF_EVEN, ROUNDING_CTX) */
static PyObject *step_avg_of(PositionStep *s, PyObject *px) {
    PyObject *args[4] = {px, s->avg_quantum, s->half_even, s->rounding_ctx};
    return PyObject_VectorcallMethod(s->s_quantize, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* A History of `h` with `item` appended (positions._appended): h is a History or a tuple (an
 * empty position's), as the caller checked */
static PyObject *step_appended(PositionStep *s, PyObject *h, PyObject *item) {
    PyObject *mine;
    Py_ssize_t n;
    if (PyTuple_CheckExact(h)) {
        n = PyTuple_GET_SIZE(h);
        mine = PySequence_List(h);
    } else {
        PyObject *items = SLOT(h, s->h_items);
        if ((n = PyLong_AsSsize_t(SLOT(h, s->h_n))) < 0)
            return NULL;
        /* another version appended already: fork from our prefix */
        mine = PyList_GET_SIZE(items) != n ? PyList_GetSlice(items, 0, n) : Py_NewRef(items);
    }
    if (!mine)
        return NULL;
    PyObject *count = NULL, *out = NULL;
    if (PyList_Append(mine, item) < 0 || !(count = PyLong_FromSsize_t(n + 1)) ||
        !(out = s->history_cls->tp_alloc(s->history_cls, 0))) {
        Py_DECREF(mine);
        Py_XDECREF(count);
        return NULL;
    }
    SLOT(out, s->h_items) = mine;
    SLOT(out, s->h_n) = count;
    return out;
}

#define STEP_MAX_TEMPS 40
/* the temporaries of one step: each new reference kept until the end */
#define KEEP(expr) ((nt < STEP_MAX_TEMPS && (temps[nt] = (expr)) != NULL) ? temps[nt++] : NULL)

/* The netting arithmetic with the exact context current; NULL on any error. */
static PyObject *step_math(PositionStep *s, PyObject **pv, PyObject **fv, PyObject *fill, int buy) {
    PyObject *temps[STEP_MAX_TEMPS];
    int nt = 0;
    PyObject *out = NULL;
    PyObject *f = fv[FL_QTY], *px = fv[FL_PRICE], *c = fv[FL_COMMISSION], *time = fv[FL_TIME];
    PyObject *q = pv[PS_QTY], *avg = pv[PS_AVG_PX], *realized = pv[PS_REALIZED], *realized_c = pv[PS_REALIZED_C],
             *open_c = pv[PS_OPEN_C], *last = pv[PS_LAST];
    PyObject *prior = KEEP(PyTuple_Pack(6, q, avg, realized, realized_c, open_c, last));
    if (!prior)
        goto done;
    int flat = PyObject_RichCompareBool(q, s->zero, Py_EQ);
    if (flat < 0)
        goto done;
    if (flat) {  /* open from flat */
        if (!(q = buy ? f : KEEP(PyNumber_Negative(f))) || !(avg = KEEP(step_avg_of(s, px))) ||
            !(open_c = KEEP(PyNumber_Add(open_c, c))))
            goto done;
    } else {
        int long_ = PyObject_RichCompareBool(q, s->zero, Py_GT);
        if (long_ < 0)
            goto done;
        if (long_ == buy) {  /* add in the same direction */
            PyObject *aq, *a, *b, *num, *den;
            if (!(aq = buy ? q : KEEP(PyNumber_Negative(q))) || !(a = KEEP(PyNumber_Multiply(aq, avg))) ||
                !(b = KEEP(PyNumber_Multiply(f, px))) || !(num = KEEP(PyNumber_Add(a, b))) ||
                !(den = KEEP(PyNumber_Add(aq, f))) || !(avg = KEEP(step_div_round(s, num, den, s->avg_quantum))) ||
                !(q = KEEP(buy ? PyNumber_Add(q, f) : PyNumber_Subtract(q, f))) ||
                !(open_c = KEEP(PyNumber_Add(open_c, c))))
                goto done;
        } else {  /* opposite direction: reduce, close or flip */
            PyObject *aq = buy ? KEEP(PyNumber_Negative(q)) : q;  /* |q| */
            if (!aq)
                goto done;
            PyObject *diff = KEEP(buy ? PyNumber_Subtract(avg, px) : PyNumber_Subtract(px, avg));
            if (!diff)
                goto done;
            int reduce = PyObject_RichCompareBool(f, aq, Py_LT);
            int close = reduce == 0 ? PyObject_RichCompareBool(f, aq, Py_EQ) : 0;
            if (reduce < 0 || close < 0)
                goto done;
            PyObject *gain, *sum, *num, *moved, *closing;
            if (reduce) {
                if (!(gain = KEEP(PyNumber_Multiply(diff, f))) || !(realized = KEEP(PyNumber_Add(realized, gain))) ||
                    !(num = KEEP(PyNumber_Multiply(open_c, f))) ||
                    !(moved = KEEP(step_div_round(s, num, aq, s->commission_quantum))) ||
                    !(sum = KEEP(PyNumber_Add(realized_c, moved))) || !(realized_c = KEEP(PyNumber_Add(sum, c))) ||
                    !(open_c = KEEP(PyNumber_Subtract(open_c, moved))) ||
                    !(q = KEEP(buy ? PyNumber_Add(q, f) : PyNumber_Subtract(q, f))))
                    goto done;
            } else if (close) {  /* everything still open is realized */
                if (!(gain = KEEP(PyNumber_Multiply(diff, f))) || !(realized = KEEP(PyNumber_Add(realized, gain))) ||
                    !(sum = KEEP(PyNumber_Add(realized_c, open_c))) || !(realized_c = KEEP(PyNumber_Add(sum, c))))
                    goto done;
                open_c = s->zero;
                q = s->zero;
                avg = s->flat_avg_px;
            } else {  /* flip: close |q|, open f - |q| at px */
                if (!(gain = KEEP(PyNumber_Multiply(diff, aq))) || !(realized = KEEP(PyNumber_Add(realized, gain))) ||
                    !(num = KEEP(PyNumber_Multiply(c, aq))) ||
                    !(closing = KEEP(step_div_round(s, num, f, s->commission_quantum))) ||
                    !(sum = KEEP(PyNumber_Add(realized_c, open_c))) ||
                    !(realized_c = KEEP(PyNumber_Add(sum, closing))) ||
                    !(open_c = KEEP(PyNumber_Subtract(c, closing))) ||
                    !(q = KEEP(buy ? PyNumber_Add(q, f) : PyNumber_Subtract(q, f))) ||
                    !(avg = KEEP(step_avg_of(s, px))))
                    goto done;
            }
        }
    }
    PyObject *commission = KEEP(PyNumber_Add(realized_c, open_c));
    if (!commission)
        goto done;
    PyObject *newest = time;
    if (last != Py_None) {
        int later = PyObject_RichCompareBool(time, last, Py_GT);
        if (later < 0)
            goto done;
        newest = later ? time : last;
    }
    PyObject *count = KEEP(PyNumber_Add(pv[PS_COUNT], s->int1));
    if (!count)
        goto done;
    /* the shared lists are appended to last, once every result is computed */
    PyObject *fills = KEEP(step_appended(s, pv[PS_FILLS], fill));
    PyObject *priors = fills ? KEEP(step_appended(s, pv[PS_PRIORS], prior)) : NULL;
    if (!priors || !(out = s->position_cls->tp_alloc(s->position_cls, 0)))
        goto done;
    PyObject *vals[PS_N] = {pv[PS_ACCOUNT], pv[PS_SYMBOL], q, avg, realized, realized_c, open_c, commission, newest,
                            count, fills, priors};
    for (int i = 0; i < PS_N; i++)
        SLOT(out, s->ps[i]) = Py_NewRef(vals[i]);
done:
    for (int i = 0; i < nt; i++)
        Py_DECREF(temps[i]);
    return out;
}
#undef KEEP

/* The next position, or NULL to give up (with or without an error set). */
static PyObject *step_fast(PositionStep *s, PyObject *p, PyObject *fill) {
    PyObject *pv[PS_N], *fv[FL_N];
    for (int i = 0; i < PS_N; i++)
        if (!(pv[i] = SLOT(p, s->ps[i])))
            return NULL;
    for (int i = 0; i < FL_N; i++)
        if (!(fv[i] = SLOT(fill, s->fl[i])))
            return NULL;
    PyObject *side = fv[FL_SIDE], *time = fv[FL_TIME];
    int buy = side == s->buy;
    if (!buy && side != s->sell && side != s->sell_short)
        return NULL;
    for (int i = 0; i < 2; i++) {
        PyObject *h = pv[i ? PS_PRIORS : PS_FILLS];
        if (!PyTuple_CheckExact(h) && (!Py_IS_TYPE(h, s->history_cls) || !SLOT(h, s->h_items) ||
                                       !PyList_CheckExact(SLOT(h, s->h_items)) || !SLOT(h, s->h_n) ||
                                       !PyLong_CheckExact(SLOT(h, s->h_n)) ||
                                       PyLong_AsSsize_t(SLOT(h, s->h_n)) < 0 ||
                                       PyLong_AsSsize_t(SLOT(h, s->h_n)) > PyList_GET_SIZE(SLOT(h, s->h_items))))
            return NULL;
    }
    if (step_finite(s, fv[FL_QTY]) != 1 || step_finite(s, fv[FL_PRICE]) != 1 || step_finite(s, fv[FL_COMMISSION]) != 1 ||
        !PyDateTime_CheckExact(time) || PyDateTime_DATE_GET_TZINFO(time) == Py_None ||
        PyObject_RichCompareBool(fv[FL_QTY], s->zero, Py_LE) != 0 ||
        PyObject_RichCompareBool(fv[FL_COMMISSION], s->zero, Py_LT) != 0 ||
        PyObject_RichCompareBool(fv[FL_ACCOUNT], pv[PS_ACCOUNT], Py_NE) != 0 ||
        PyObject_RichCompareBool(fv[FL_SYMBOL], pv[PS_SYMBOL], Py_NE) != 0)
        return NULL;
    /* the exact context current for the arithmetic, the caller's restored after, as in Python */
    PyObject *outer = PyObject_CallNoArgs(s->getcontext);
    if (!outer)
        return NULL;
    PyObject *r = PyObject_CallOneArg(s->setcontext, s->ctx);
    if (!r) {
        Py_DECREF(outer);
        return NULL;
    }
    Py_DECREF(r);
    PyObject *out = step_math(s, pv, fv, fill, buy);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    r = PyObject_CallOneArg(s->setcontext, outer);
    Py_DECREF(outer);
    if (!r) {  /* the caller's context could not be restored: that error, not the step's */
        Py_XDECREF(out);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    Py_DECREF(r);
    PyErr_Restore(type, value, tb);
    return out;
}

static PyObject *step_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PositionStep *s = (PositionStep *)callable;
    if (PyVectorcall_NARGS(nargsf) != 2 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "PositionStep takes (position, fill)");
        return NULL;
    }
    PyObject *out = NULL;
    if (Py_IS_TYPE(args[0], s->position_cls) && Py_IS_TYPE(args[1], s->fill_cls))
        out = step_fast(s, args[0], args[1]);
    if (out)
        return out;
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        PyErr_Clear();
    }
    return PyObject_Vectorcall(s->fallback, args, 2, NULL);
}

/* PositionStep(position_cls, position_fields, fill_cls, fill_fields, history_cls, history_fields,
 *              decimal_cls, fallback, ctx, rounding_ctx, setcontext, getcontext, zero, flat_avg_px,
 *              avg_quantum, commission_quantum, round_half_even, buy, sell, sell_short)
 * The field names are those the enums above list, in that order; history_fields: (items, n). */
static PyObject *step_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *position_cls, *position_fields, *fill_cls, *fill_fields, *history_cls, *history_fields, *decimal_cls,
        *fallback, *ctx, *rounding_ctx, *setcontext, *getcontext, *zero, *flat_avg_px, *avg_quantum,
        *commission_quantum, *half_even, *buy, *sell, *sell_short;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "PositionStep takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!OO!OO!O!O!OOOOOOOOOOOOO", &PyType_Type, &position_cls, &position_fields,
                          &PyType_Type, &fill_cls, &fill_fields, &PyType_Type, &history_cls, &PyTuple_Type,
                          &history_fields, &PyType_Type, &decimal_cls, &fallback, &ctx, &rounding_ctx, &setcontext,
                          &getcontext, &zero, &flat_avg_px, &avg_quantum, &commission_quantum, &half_even, &buy,
                          &sell, &sell_short))
        return NULL;
    if (check_class(position_cls) < 0 || check_class(fill_cls) < 0 || check_class(history_cls) < 0)
        return NULL;
    if (PyTuple_GET_SIZE(history_fields) != 2) {
        PyErr_SetString(PyExc_ValueError, "history_fields: (items, n)");
        return NULL;
    }
    PositionStep *s = (PositionStep *)type->tp_alloc(type, 0);
    if (!s)
        return NULL;
    s->vectorcall = step_vectorcall;
    s->position_cls = (PyTypeObject *)Py_NewRef(position_cls);
    s->fill_cls = (PyTypeObject *)Py_NewRef(fill_cls);
    s->history_cls = (PyTypeObject *)Py_NewRef(history_cls);
    s->decimal_cls = (PyTypeObject *)Py_NewRef(decimal_cls);
    s->fallback = Py_NewRef(fallback);
    s->ctx = Py_NewRef(ctx);
    s->rounding_ctx = Py_NewRef(rounding_ctx);
    s->setcontext = Py_NewRef(setcontext);
    s->getcontext = Py_NewRef(getcontext);
    s->zero = Py_NewRef(zero);
    s->flat_avg_px = Py_NewRef(flat_avg_px);
    s->avg_quantum = Py_NewRef(avg_quantum);
    s->commission_quantum = Py_NewRef(commission_quantum);
    s->half_even = Py_NewRef(half_even);
    s->buy = Py_NewRef(buy);
    s->sell = Py_NewRef(sell);
    s->sell_short = Py_NewRef(sell_short);
    s->int1 = PyLong_FromLong(1);
    s->int2 = PyLong_FromLong(2);
    s->s_is_finite = PyUnicode_InternFromString("is_finite");
    s->s_quantize = PyUnicode_InternFromString("quantize");
    if (!s->int1 || !s->int2 || !s->s_is_finite || !s->s_quantize ||
        offsets_of(s->position_cls, position_fields, s->ps, PS_N) < 0 ||
        offsets_of(s->fill_cls, fill_fields, s->fl, FL_N) < 0 ||
        (s->h_items = slot_offset(s->history_cls, PyTuple_GET_ITEM(history_fields, 0))) < 0 ||
        (s->h_n = slot_offset(s->history_cls, PyTuple_GET_ITEM(history_fields, 1))) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static int step_traverse(PositionStep *s, visitproc visit, void *arg) {
    Py_VISIT(s->position_cls);
    Py_VISIT(s->fill_cls);
    Py_VISIT(s->history_cls);
    Py_VISIT(s->decimal_cls);
    Py_VISIT(s->fallback);
    Py_VISIT(s->ctx);
    Py_VISIT(s->rounding_ctx);
    Py_VISIT(s->setcontext);
    Py_VISIT(s->getcontext);
    Py_VISIT(s->zero);
    Py_VISIT(s->flat_avg_px);
    Py_VISIT(s->avg_quantum);
    Py_VISIT(s->commission_quantum);
    Py_VISIT(s->half_even);
    Py_VISIT(s->buy);
    Py_VISIT(s->sell);
    Py_VISIT(s->sell_short);
    return 0;
}

static int step_clear(PositionStep *s) {
    Py_CLEAR(s->position_cls);
    Py_CLEAR(s->fill_cls);
    Py_CLEAR(s->history_cls);
    Py_CLEAR(s->decimal_cls);
    Py_CLEAR(s->fallback);
    Py_CLEAR(s->ctx);
    Py_CLEAR(s->rounding_ctx);
    Py_CLEAR(s->setcontext);
    Py_CLEAR(s->getcontext);
    Py_CLEAR(s->zero);
    Py_CLEAR(s->flat_avg_px);
    Py_CLEAR(s->avg_quantum);
    Py_CLEAR(s->commission_quantum);
    Py_CLEAR(s->half_even);
    Py_CLEAR(s->buy);
    Py_CLEAR(s->sell);
    Py_CLEAR(s->sell_short);
    Py_CLEAR(s->int1);
    Py_CLEAR(s->int2);
    Py_CLEAR(s->s_is_finite);
    Py_CLEAR(s->s_quantize);
    return 0;
}

static void step_dealloc(PositionStep *s) {
    PyObject_GC_UnTrack(s);
    step_clear(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMemberDef step_members[] = {
    {"fallback", T_OBJECT_EX, offsetof(PositionStep, fallback), READONLY, "the Python path this step falls back to"},
    {NULL},
};

static PyTypeObject PositionStepType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backbone._speedups.PositionStep",
    .tp_basicsize = sizeof(PositionStep),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "positions._apply_fill_python for the plain case; everything else goes to `fallback`.",
    .tp_new = step_new,
    .tp_traverse = (traverseproc)step_traverse,
    .tp_clear = (inquiry)step_clear,
    .tp_dealloc = (destructor)step_dealloc,
    .tp_vectorcall_offset = offsetof(PositionStep, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = step_members,
};

/* ------------------------------------------------------------------------------------------
 * SlotsMatch: whether two slotted objects agree field by field
 *
 * SlotsMatch(left_cls, right_cls, pairs, typed, fallback)(left, right) is
 *     all(getattr(left, a) is getattr(right, b) if identity else getattr(left, a) == getattr(right, b)
 *         for a, b, identity in pairs)
 *     and all(isinstance(getattr(left, f), t) for f, t in typed)
 * evaluated in that order and stopping at the first false one, like the `and` chain of
 * order_state._reported_as_computed that it runs: `==` is the objects' own comparison (no
 * identity shortcut) and an exception it raises propagates. Objects of other classes, or with
 * a slot unset, go to fallback(left, right).
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *left_cls, *right_cls;
    Py_ssize_t n_pairs, n_typed;
    Py_ssize_t *left_off, *right_off, *typed_off;
    int *identity;
    PyObject *typed_types; /* tuple of the isinstance classes, in `typed` order */
    PyObject *fallback;
} SlotsMatch;

static PyObject *match_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    SlotsMatch *s = (SlotsMatch *)callable;
    if (PyVectorcall_NARGS(nargsf) != 2 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "SlotsMatch takes (left, right)");
        return NULL;
    }
    PyObject *left = args[0], *right = args[1];
    if (!Py_IS_TYPE(left, s->left_cls) || !Py_IS_TYPE(right, s->right_cls))
        return PyObject_Vectorcall(s->fallback, args, 2, NULL);
    for (Py_ssize_t i = 0; i < s->n_pairs; i++)
        if (!SLOT(left, s->left_off[i]) || !SLOT(right, s->right_off[i]))
            return PyObject_Vectorcall(s->fallback, args, 2, NULL);
    for (Py_ssize_t i = 0; i < s->n_typed; i++)
        if (!SLOT(left, s->typed_off[i]))
            return PyObject_Vectorcall(s->fallback, args, 2, NULL);
    for (Py_ssize_t i = 0; i < s->n_pairs; i++) {
        PyObject *a = SLOT(left, s->left_off[i]), *b = SLOT(right, s->right_off[i]);
        if (s->identity[i]) {
            if (a != b)
                Py_RETURN_FALSE;
            continue;
        }
        /* held while compared: an __eq__ written in Python could replace the slots */
        Py_INCREF(a);
        Py_INCREF(b);
        PyObject *eq = PyObject_RichCompare(a, b, Py_EQ);
        Py_DECREF(a);
        Py_DECREF(b);
        if (!eq)
            return NULL;
        int truth = PyObject_IsTrue(eq);
        Py_DECREF(eq);
        if (truth < 0)
            return NULL;
        if (!truth)
            Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < s->n_typed; i++) {
        int ok = PyObject_IsInstance(SLOT(left, s->typed_off[i]), PyTuple_GET_ITEM(s->typed_types, i));
        if (ok < 0)
            return NULL;
        if (!ok)
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static int match_traverse(SlotsMatch *s, visitproc visit, void *arg) {
    Py_VISIT(s->left_cls);
    Py_VISIT(s->right_cls);
    Py_VISIT(s->typed_types);
    Py_VISIT(s->fallback);
    return 0;
}

static int match_clear(SlotsMatch *s) {
    Py_CLEAR(s->left_cls);
    Py_CLEAR(s->right_cls);
    Py_CLEAR(s->typed_types);
    Py_CLEAR(s->fallback);
    return 0;
}

static void match_dealloc(SlotsMatch *s) {
    PyObject_GC_UnTrack(s);
    match_clear(s);
    PyMem_Free(s->left_off);
    PyMem_Free(s->right_off);
    PyMem_Free(s->typed_off);
    PyMem_Free(s->identity);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* SlotsMatch(left_cls, right_cls, pairs: ((left field, right field, identity: bool), ...),
 *            typed: ((left field, class), ...), fallback) */
static PyObject *match_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *left_cls, *right_cls, *pairs, *typed, *fallback;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "SlotsMatch takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!O!O!O!O", &PyType_Type, &left_cls, &PyType_Type, &right_cls, &PyTuple_Type,
                          &pairs, &PyTuple_Type, &typed, &fallback))
        return NULL;
    if (check_class(left_cls) < 0 || check_class(right_cls) < 0)
        return NULL;
    SlotsMatch *s = (SlotsMatch *)type->tp_alloc(type, 0);
    if (!s)
        return NULL;
    s->vectorcall = match_vectorcall;
    s->left_cls = (PyTypeObject *)Py_NewRef(left_cls);
    s->right_cls = (PyTypeObject *)Py_NewRef(right_cls);
    s->fallback = Py_NewRef(fallback);
    s->n_pairs = PyTuple_GET_SIZE(pairs);
    s->n_typed = PyTuple_GET_SIZE(typed);
    s->left_off = PyMem_Calloc(s->n_pairs + 1, sizeof(Py_ssize_t));
    s->right_off = PyMem_Calloc(s->n_pairs + 1, sizeof(Py_ssize_t));
    s->identity = PyMem_Calloc(s->n_pairs + 1, sizeof(int));
    s->typed_off = PyMem_Calloc(s->n_typed + 1, sizeof(Py_ssize_t));
    if (!(s->typed_types = PyTuple_New(s->n_typed)) || !s->left_off || !s->right_off || !s->identity ||
        !s->typed_off) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < s->n_pairs; i++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, i), *a, *b;
        int identity;
        if (!PyArg_ParseTuple(pair, "UUp", &a, &b, &identity) ||
            (s->left_off[i] = slot_offset(s->left_cls, a)) < 0 || (s->right_off[i] = slot_offset(s->right_cls, b)) < 0)
            goto fail;
        s->identity[i] = identity;
    }
    for (Py_ssize_t i = 0; i < s->n_typed; i++) {
        PyObject *name, *cls;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(typed, i), "UO", &name, &cls) ||
            (s->typed_off[i] = slot_offset(s->left_cls, name)) < 0)
            goto fail;
        PyTuple_SET_ITEM(s->typed_types, i, Py_NewRef(cls));
    }
    return (PyObject *)s;
fail:
    Py_DECREF(s);
    return NULL;
}

static PyTypeObject MatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backbone._speedups.SlotsMatch",
    .tp_basicsize = sizeof(SlotsMatch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Whether two slotted objects agree on pairs of fields; others go to `fallback`.",
    .tp_new = match_new,
    .tp_traverse = (traverseproc)match_traverse,
    .tp_clear = (inquiry)match_clear,
    .tp_dealloc = (destructor)match_dealloc,
    .tp_vectorcall_offset = offsetof(SlotsMatch, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* ------------------------------------------------------------------------------------------ */

/* utc_millis(dt): milliseconds since the epoch, floored, of a UTC datetime (exact type, tzinfo
 * datetime.timezone.utc); None for anything else (the caller's Python path decides). */
static PyObject *utc_millis(PyObject *module, PyObject *v) {
    if (!is_utc_datetime(v))
        Py_RETURN_NONE;
    int64_t micros = utc_micros(v);
    /* floor division: before 1970 the remainder is negative */
    return PyLong_FromLongLong(micros / 1000 - (micros % 1000 < 0));
}

/* dt.isoformat(sep) of a UTC datetime (is_utc_datetime) into text[40]; returns its length. */
static int utc_isoformat(PyObject *v, char sep, char *text) {
    int us = PyDateTime_DATE_GET_MICROSECOND(v);
    if (us)
        return snprintf(text, 40, "%04d-%02d-%02d%c%02d:%02d:%02d.%06d+00:00", PyDateTime_GET_YEAR(v),
                        PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v), sep, PyDateTime_DATE_GET_HOUR(v),
                        PyDateTime_DATE_GET_MINUTE(v), PyDateTime_DATE_GET_SECOND(v), us);
    return snprintf(text, 40, "%04d-%02d-%02d%c%02d:%02d:%02d+00:00", PyDateTime_GET_YEAR(v),
                    PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v), sep, PyDateTime_DATE_GET_HOUR(v),
                    PyDateTime_DATE_GET_MINUTE(v), PyDateTime_DATE_GET_SECOND(v));
}

/* isoformat(dt): dt.isoformat(), formatted here for an exact datetime in datetime.timezone.utc
 * (the same text: microseconds only when not 0, "+00:00"); anything else calls dt.isoformat(). */
static PyObject *isoformat(PyObject *module, PyObject *v) {
    if (!is_utc_datetime(v))
        return PyObject_CallMethod(v, "isoformat", NULL);
    char text[40];
    int n = utc_isoformat(v, 'T', text);
    return PyUnicode_FromStringAndSize(text, n);
}

/* any_nul(*texts): whether one of the arguments, str or None (skipped), holds a NUL character;
 * anything else is judged by its str(). One call for all the text fields of an event: Postgres
 * text and JSON cannot store NUL, so a record with one is refused before it is applied. */
static PyObject *any_nul(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *v = args[i];
        if (v == Py_None)
            continue;
        PyObject *text = PyUnicode_Check(v) ? Py_NewRef(v) : PyObject_Str(v);
        if (!text)
            return NULL;
        Py_ssize_t at = PyUnicode_FindChar(text, 0, 0, PyUnicode_GET_LENGTH(text), 1);
        Py_DECREF(text);
        if (at == -2)
            return NULL;
        if (at >= 0)
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* ---- Row text (projections.store): the rows of one upsert as one text parameter, fields
 * separated by \x1f, rows by \x1e, NULL as a field that is a lone \x1d; the statement splits and
 * casts it. Values are written as they are: no escapes, so a text holding one of the three
 * separators (or a NUL) is not plain. */

#define FIELD_SEP '\x1f'
#define ROW_SEP '\x1e'
#define NULL_FIELD '\x1d'

/* One value; 0 written, 1 not a plain case, -1 error. */
static int row_value(Buf *b, PyObject *v, PyObject *decimal_type) {
    if (v == Py_None)
        return buf_byte(b, NULL_FIELD);
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char *text = PyUnicode_AsUTF8AndSize(v, &n);
        if (!text) { /* a lone surrogate: the Python path decides */
            PyErr_Clear();
            return 1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c < 0x20 && (c == 0 || c == FIELD_SEP || c == ROW_SEP || c == NULL_FIELD))
                return 1;
        }
        return buf_put(b, text, n);
    }
    if (PyBool_Check(v))
        return buf_byte(b, v == Py_True ? 't' : 'f');
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            return 1;
        if (x == -1 && PyErr_Occurred())
            return -1;
        char text[24];
        return buf_put(b, text, snprintf(text, sizeof(text), "%lld", x));
    }
    if (Py_IS_TYPE(v, (PyTypeObject *)decimal_type)) {
        PyObject *str = PyObject_Str(v);
        if (!str)
            return -1;
        Py_ssize_t n;
        const char *text = PyUnicode_AsUTF8AndSize(str, &n);
        int rc = text ? 0 : -1;
        /* finite: only digits, sign, point and exponent (NaN, sNaN and Infinity hold letters) */
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
            char c = text[i];
            if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'E'))
                rc = 1;
        }
        if (rc == 0)
            rc = buf_put(b, text, n);
        Py_DECREF(str);
        return rc;
    }
    if (is_utc_datetime(v)) {
        char text[40];
        return buf_put(b, text, utc_isoformat(v, ' ', text));
    }
    return 1;
}

/* rows_text(rows, Decimal, fallback): the text of a list of tuples, or fallback(rows) when a
 * value is not one of: None, str, bool, int (64-bit), finite Decimal, UTC datetime. */
static PyObject *rows_text(PyObject *module, PyObject *args) {
    PyObject *rows, *decimal_type, *fallback;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyList_Type, &rows, &PyType_Type, &decimal_type, &fallback))
        return NULL;
    Buf b;
    b.p = b.stack;
    b.len = 0;
    b.cap = (Py_ssize_t)sizeof(b.stack);
    int rc = 0;
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows) && rc == 0; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_CheckExact(row)) {
            rc = 1;
            break;
        }
        if (r > 0 && (rc = buf_byte(&b, ROW_SEP)) != 0)
            break;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(row) && rc == 0; i++) {
            if (i > 0 && (rc = buf_byte(&b, FIELD_SEP)) != 0)
                break;
            rc = row_value(&b, PyTuple_GET_ITEM(row, i), decimal_type);
        }
    }
    PyObject *out = rc < 0 ? NULL : rc > 0 ? PyObject_CallOneArg(fallback, rows)
                                           : PyUnicode_DecodeUTF8(b.p, b.len, NULL);
    if (b.p != b.stack)
        PyMem_Free(b.p);
    return out;
}

static PyMethodDef methods[] = {
    {"isoformat", isoformat, METH_O, "dt.isoformat(), formatted in C for UTC datetimes."},
    {"rows_text", rows_text, METH_VARARGS,
     "rows_text(rows, Decimal, fallback): one upsert's rows as its text parameter (projections.store), or fallback(rows)."},
    {"any_nul", (PyCFunction)(void (*)(void))any_nul, METH_FASTCALL,
     "any_nul(*texts): whether a str argument holds a NUL character (None skipped)."},
    {"utc_millis", utc_millis, METH_O, "Milliseconds since the epoch (floored) of a UTC datetime, else None."},
    {"decimal_parts", decimal_parts, METH_VARARGS,
     "decimal_parts(d, Decimal): (negative, coefficient, exponent, digits) read from d's memory, or None."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "backbone._speedups",
    .m_doc = "Compiled fast paths of the hot loops (see the source's header comment).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI)
        return NULL;
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&DecoderType) < 0 || PyType_Ready(&DispatchType) < 0 || PyType_Ready(&SlotsType) < 0 ||
        PyType_Ready(&MachineType) < 0 || PyType_Ready(&PositionStepType) < 0 || PyType_Ready(&MatchType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Encoder", (PyObject *)&EncoderType) < 0 ||
        PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0 ||
        PyModule_AddObjectRef(m, "Dispatch", (PyObject *)&DispatchType) < 0 ||
        PyModule_AddObjectRef(m, "Slots", (PyObject *)&SlotsType) < 0 ||
        PyModule_AddObjectRef(m, "OrderMachine", (PyObject *)&MachineType) < 0 ||
        PyModule_AddObjectRef(m, "PositionStep", (PyObject *)&PositionStepType) < 0 ||
        PyModule_AddObjectRef(m, "SlotsMatch", (PyObject *)&MatchType) < 0 ||
        PyModule_AddIntConstant(m, "SLOTS_REPLACE", SLOTS_REPLACE) < 0 ||
        PyModule_AddIntConstant(m, "SLOTS_BUILD", SLOTS_BUILD) < 0 ||
        PyModule_AddIntConstant(m, "K_NULL", K_NULL) < 0 || PyModule_AddIntConstant(m, "K_STRING", K_STRING) < 0 ||
        PyModule_AddIntConstant(m, "K_BYTES", K_BYTES) < 0 || PyModule_AddIntConstant(m, "K_LONG", K_LONG) < 0 ||
        PyModule_AddIntConstant(m, "K_INT", K_INT) < 0 || PyModule_AddIntConstant(m, "K_BOOL", K_BOOL) < 0 ||
        PyModule_AddIntConstant(m, "K_DOUBLE", K_DOUBLE) < 0 ||
        PyModule_AddIntConstant(m, "K_TIMESTAMP", K_TIMESTAMP) < 0 ||
        PyModule_AddIntConstant(m, "K_DECIMAL", K_DECIMAL) < 0 || PyModule_AddIntConstant(m, "K_ENUM", K_ENUM) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
