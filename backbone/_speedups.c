/*
 * Compiled, format-level fast paths: no business rule lives here (the order state machine, the
 * reported-fields check and position netting are the Python of backbone/domain/, compiled from
 * that same source where a compiler is available, see setup.py).
 *
 * - Encoder / Decoder: the Avro codec (backbone.codec.avro), a record to its single-object
 *   encoding and back into its dataclass; Dispatch, the header lookup in front of the decoders;
 * - utc_millis, isoformat: record timestamps (backbone.record_time) and ISO text of UTC times
 *   (backbone.domain.plain);
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
 * the Python paths and with fastavro. Errors that are not `Exception`s (KeyboardInterrupt, ...)
 * propagate.
 *
 * Only the public C API is used: record fields are read and set through their slot descriptors
 * (as getattr and object.__setattr__ do), decimals are read through str() and built from text.
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
    return PyDateTime_CheckExact(v) && PyDateTime_DATE_GET_TZINFO(v) == PyDateTime_TimeZone_UTC;
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
    PyObject *slot; /* the record class's slot descriptor; NULL for K_NULL */
    int kind;
    int nullable;
    PyObject *a; /* K_DECIMAL: cache dict; K_ENUM: symbol -> varint bytes dict */
    PyObject *b; /* K_DECIMAL: from_text(str) -> bytes */
    PyObject *c; /* K_DECIMAL: from_value(value) -> bytes */
    int scale, precision; /* K_DECIMAL */
} EncField;

typedef struct {
    PyObject *slot;
    PyObject *value;
} Required;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *cls;
    PyObject *header;
    PyObject *fallback;
    PyObject *decimal_type;
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
        if (Py_IS_TYPE(v, (PyTypeObject *)self->decimal_type)) {
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

/* The descriptor of slot `name` of `cls` (a new reference), or NULL with an error set. Slots are
 * read and written through the descriptor protocol, as getattr and object.__setattr__ do, so
 * nothing depends on where a slot lies in the object. */
static PyObject *slot_descriptor(PyTypeObject *cls, PyObject *name) {
    PyObject *d = PyObject_GetAttr((PyObject *)cls, name);
    if (!d)
        return NULL;
    if (!Py_TYPE(d)->tp_descr_get || !Py_TYPE(d)->tp_descr_set) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", cls->tp_name, name);
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* The value of a slot (new reference), or NULL with an error set (AttributeError: unset). */
static inline PyObject *slot_get(PyObject *slot, PyObject *obj) {
    return Py_TYPE(slot)->tp_descr_get(slot, obj, (PyObject *)Py_TYPE(obj));
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
        PyObject *v = slot_get(f->slot, r);
        if (v == NULL)
            goto error; /* unset slot: the Python path explains */
        if (f->nullable) {
            if (v == Py_None) {
                Py_DECREF(v);
                if (buf_byte(&b, 0) < 0)
                    goto error;
                continue;
            }
            if (buf_byte(&b, 2) < 0) {
                Py_DECREF(v);
                goto error;
            }
        }
        int rc = encode_value(self, f, v, &b);
        Py_DECREF(v);
        if (rc < 0)
            goto error;
        if (rc == 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < self->nrequired; i++) {
        PyObject *v = slot_get(self->required[i].slot, r);
        if (v == NULL)
            goto error;
        int eq = PyObject_RichCompareBool(v, self->required[i].value, Py_EQ);
        Py_DECREF(v);
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

static int check_class(PyObject *cls) {
    if (!PyType_Check(cls) || ((PyTypeObject *)cls)->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "cls must be a class with __slots__ and no __dict__");
        return -1;
    }
    return 0;
}

/* Encoder(cls, header, fields, required, fallback, decimal_type, cache_max)
 *   fields:   ((slot name | None, kind, nullable, a, b, c, scale, precision), ...) in schema order
 *   required: ((slot name, value), ...) dataclass-only fields and the value they must hold */
static PyObject *encoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *cls, *header, *fields, *required, *fallback, *decimal_type;
    Py_ssize_t cache_max;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Encoder takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!O!O!OOn", &cls, &PyBytes_Type, &header, &PyTuple_Type, &fields, &PyTuple_Type,
                          &required, &fallback, &decimal_type, &cache_max))
        return NULL;
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
        f->a = Py_NewRef(a);
        f->b = Py_NewRef(b);
        f->c = Py_NewRef(c);
        self->nfields = i + 1; /* from here on cleared with the encoder */
        if (kind != K_NULL && !(f->slot = slot_descriptor(self->cls, name)))
            goto fail;
        if ((kind == K_DECIMAL || kind == K_ENUM) && !PyDict_CheckExact(a)) {
            PyErr_SetString(PyExc_TypeError, "decimal and enum fields need a dict");
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(required); i++) {
        PyObject *name, *value;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(required, i), "OO", &name, &value))
            goto fail;
        self->required[i].value = Py_NewRef(value);
        self->nrequired = i + 1;
        if (!(self->required[i].slot = slot_descriptor(self->cls, name)))
            goto fail;
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
        Py_VISIT(self->fields[i].slot);
    }
    for (Py_ssize_t i = 0; i < self->nrequired; i++) {
        Py_VISIT(self->required[i].value);
        Py_VISIT(self->required[i].slot);
    }
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
        Py_CLEAR(self->fields[i].slot);
    }
    self->nfields = 0;
    for (Py_ssize_t i = 0; i < self->nrequired; i++) {
        Py_CLEAR(self->required[i].value);
        Py_CLEAR(self->required[i].slot);
    }
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
    PyObject *no_args; /* () */
    Py_ssize_t header_size;
    Py_ssize_t cache_slots; /* entries of each field's ValueSlot table, a power of two */
    Py_ssize_t nslots;
    PyObject *slots[MAX_FIELDS]; /* the class's slot descriptors, in field order */
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
    /* object.__new__(cls), then each slot through its descriptor (object.__setattr__ without
     * the frozen dataclass's __setattr__): what plain.builder does in Python */
    obj = PyBaseObject_Type.tp_new(self->cls, self->no_args, NULL);
    if (!obj)
        goto fallback;
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        if (Py_TYPE(self->slots[i])->tp_descr_set(self->slots[i], obj, values[i]) < 0) {
            Py_CLEAR(obj);
            goto fallback;
        }
        Py_CLEAR(values[i]);
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
    if (!(self->no_args = PyTuple_New(0)))
        goto fail;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (!(self->slots[i] = slot_descriptor(self->cls, PyTuple_GET_ITEM(names, i))))
            goto fail;
        self->nslots = i + 1;
    }
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
    for (Py_ssize_t i = 0; i < self->nslots; i++)
        Py_VISIT(self->slots[i]);
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
    Py_CLEAR(self->no_args);
    for (Py_ssize_t i = 0; i < self->nslots; i++)
        Py_CLEAR(self->slots[i]);
    self->nslots = 0;
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
    if (PyBytes_CheckExact(v)) { /* bytea's hex input form: \x then two digits a byte */
        static const char digits[] = "0123456789abcdef";
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(v);
        Py_ssize_t n = PyBytes_GET_SIZE(v);
        if (buf_reserve(b, 2 + 2 * n) < 0)
            return -1;
        char *out = b->p + b->len;
        *out++ = '\\';
        *out++ = 'x';
        for (Py_ssize_t i = 0; i < n; i++) {
            *out++ = digits[data[i] >> 4];
            *out++ = digits[data[i] & 15];
        }
        b->len += 2 + 2 * n;
        return 0;
    }
    return 1;
}

/* rows_text(rows, Decimal, fallback): the text of a list of tuples, or fallback(rows) when a
 * value is not one of: None, str, bool, int (64-bit), finite Decimal, UTC datetime, bytes. */
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
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&DecoderType) < 0 || PyType_Ready(&DispatchType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Encoder", (PyObject *)&EncoderType) < 0 ||
        PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0 ||
        PyModule_AddObjectRef(m, "Dispatch", (PyObject *)&DispatchType) < 0 ||
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
