/* The per-request step of asgiscale's instrumentation, compiled (see instrument.py).
 *
 * A `Meter` holds one worker's request accounting; its `run_asgi` and `send` attributes
 * take the place of the methods of the same names on uvicorn's request cycle class. They
 * note what the Python versions in instrument.py note (start time, status, body bytes,
 * duration bucket, busy time) and return uvicorn's own coroutine, so the app and uvicorn
 * see nothing else. The counts go straight into the worker's slot of shared memory, at the
 * series position the recorder gives for each (method, status) pair; the state the worker's
 * 100 ms tick reads (the open requests, the busy time, the response bytes) is exposed as
 * attributes.
 *
 * Time is CLOCK_MONOTONIC in nanoseconds, the clock of Python's time.monotonic_ns().
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <time.h>

#define MAX_BOUNDS 64
#define MAX_PLACES 256 /* (method, status) pairs remembered; past that the recorder is asked each time */

typedef struct {
    PyObject *method;
    long status;
    Py_ssize_t position;
} Place;

typedef struct {
    PyObject_HEAD
    PyObject *base_run;   /* uvicorn's RequestResponseCycle.run_asgi */
    PyObject *base_send;  /* uvicorn's RequestResponseCycle.send */
    PyObject *open;       /* dict: cycle -> start (ns) of the requests not recorded yet */
    PyObject *place;      /* callable(method, status) -> word index of that series in `words` */
    PyObject *waiting;    /* requests queued for admission (a deque) */
    PyObject *admit_next; /* callable() that lets queued requests in, called when one finishes */
    long long busy_ns;    /* time with at least one request open, up to busy_since */
    long long busy_since; /* start of the current busy stretch */
    long long response_bytes;
    Py_buffer view;       /* the slot table's words, written in place */
    long long *words;
    Py_ssize_t nwords;
    Py_ssize_t nplaces;
    Place places[MAX_PLACES];
    Py_ssize_t nbounds;
    long long bounds[MAX_BOUNDS]; /* the duration buckets' upper bounds (ns), ascending */
} Meter;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Meter *meter;
} Hook;

static PyTypeObject MeterType;
static PyTypeObject HookType;

static PyObject *s_type, *s_status, *s_body, *s_more_body, *s_scope, *s_method, *s_start, *s_body_type;

static inline long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* message[key] (a new reference), or NULL with no error set when absent. */
static inline PyObject *
lookup(PyObject *message, PyObject *key)
{
    if (PyDict_CheckExact(message)) { /* ASGI messages are dicts: the fast path */
        PyObject *value = PyDict_GetItemWithError(message, key);
        Py_XINCREF(value);
        return value;
    }
    PyObject *value = PyObject_GetItem(message, key);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
    }
    return value;
}

static inline int
is_string(PyObject *value, PyObject *expected)
{
    if (value == expected) {
        return 1;
    }
    return value != NULL && PyUnicode_Check(value) && PyUnicode_Compare(value, expected) == 0;
}

/* The word index of the series of (method, status): remembered, or asked of the recorder. */
static Py_ssize_t
find_place(Meter *m, PyObject *method, PyObject *status)
{
    long code = PyLong_AsLong(status);
    if (code == -1 && PyErr_Occurred()) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < m->nplaces; i++) {
        Place *place = &m->places[i];
        if (place->status == code && (place->method == method || PyUnicode_Compare(place->method, method) == 0)) {
            return place->position;
        }
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *answer = PyObject_CallFunctionObjArgs(m->place, method, status, NULL);
    if (answer == NULL) {
        return -1;
    }
    Py_ssize_t position = PyLong_AsSsize_t(answer);
    Py_DECREF(answer);
    if (position == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (position < 0 || position + 2 + m->nbounds >= m->nwords) {
        PyErr_Format(PyExc_IndexError, "series position %zd outside the slot table", position);
        return -1;
    }
    if (m->nplaces < MAX_PLACES) {
        Place *place = &m->places[m->nplaces++];
        place->method = Py_NewRef(method);
        place->status = code;
        place->position = position;
    }
    return position;
}

/* Count one request of `method` with `status` that took `duration` ns. */
static int
count(Meter *m, PyObject *method, PyObject *status, long long duration)
{
    Py_ssize_t position = find_place(m, method, status);
    if (position < 0) {
        return -1;
    }
    Py_ssize_t bucket = 0;
    while (bucket < m->nbounds && m->bounds[bucket] < duration) {
        bucket++;
    }
    m->words[position + 1 + bucket] += 1;
    m->words[position + 2 + m->nbounds] += duration;
    return 0;
}

/* Count one finished request of `cycle` with `status`, open since `started` (ns), and let the
 * next queued request in. */
static int
record(Meter *m, PyObject *cycle, PyObject *status, long long started)
{
    long long end = now_ns();
    if (PyDict_GET_SIZE(m->open) == 0) {
        m->busy_ns += end - m->busy_since;
    }
    PyObject *scope = PyObject_GetAttr(cycle, s_scope);
    if (scope == NULL) {
        return -1;
    }
    PyObject *method = lookup(scope, s_method);
    Py_DECREF(scope);
    if (method == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_KeyError, "method");
        }
        return -1;
    }
    int failed = count(m, method, status, end - started);
    Py_DECREF(method);
    if (failed < 0) {
        return -1;
    }
    int queued = PyObject_IsTrue(m->waiting);
    if (queued < 0) {
        return -1;
    }
    if (queued) {
        PyObject *result = PyObject_CallNoArgs(m->admit_next);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
    }
    return 0;
}

/* Note `cycle` as open since `started`; the busy stretch starts with the first open one. */
static int
open_request(Meter *m, PyObject *cycle, long long started, long long since)
{
    if (PyDict_GET_SIZE(m->open) == 0) {
        m->busy_since = started;
    }
    PyObject *value = PyLong_FromLongLong(since);
    if (value == NULL) {
        return -1;
    }
    int result = PyDict_SetItem(m->open, cycle, value);
    Py_DECREF(value);
    return result;
}

/* The start message: the cycle keeps its status until the last body message. */
static int
start_sent(PyObject *cycle, PyObject *message)
{
    PyObject *status = lookup(message, s_status);
    if (status == NULL) {
        PyErr_Clear(); /* a missing status is for uvicorn's send to refuse */
        return 0;
    }
    int result = PyObject_SetAttr(cycle, s_status, status);
    Py_DECREF(status);
    return result;
}

/* A body message: count its bytes, and record the request if it is the last one. */
static int
body_sent(Meter *m, PyObject *cycle, PyObject *message)
{
    PyObject *body = lookup(message, s_body);
    if (body != NULL && PyBytes_CheckExact(body)) {
        m->response_bytes += PyBytes_GET_SIZE(body);
    }
    else if (body != NULL && body != Py_None) {
        Py_ssize_t size = PyObject_Length(body);
        if (size > 0) {
            m->response_bytes += size;
        }
    }
    Py_XDECREF(body);
    PyObject *more = lookup(message, s_more_body);
    int more_body = more == NULL ? 0 : PyObject_IsTrue(more);
    Py_XDECREF(more);
    PyErr_Clear(); /* a body or more_body of the wrong type is for uvicorn's send to refuse */
    if (more_body > 0) {
        return 0;
    }
    PyObject *start = PyDict_GetItemWithError(m->open, cycle);
    if (start == NULL) {
        return PyErr_Occurred() ? -1 : 0; /* not open: already recorded, or never started here */
    }
    long long started = PyLong_AsLongLong(start);
    if (PyDict_DelItem(m->open, cycle) < 0) {
        return -1;
    }
    PyObject *status = PyObject_GetAttr(cycle, s_status);
    if (status == NULL) {
        return -1;
    }
    int result = record(m, cycle, status, started);
    Py_DECREF(status);
    return result;
}

static PyObject *
hook_run_asgi(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Meter *m = ((Hook *)self)->meter;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "run_asgi(cycle, app) takes two positional arguments");
        return NULL;
    }
    long long started = now_ns();
    if (open_request(m, args[0], started, started) < 0) {
        return NULL;
    }
    return PyObject_Vectorcall(m->base_run, args, 2, NULL);
}

static PyObject *
hook_send(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Meter *m = ((Hook *)self)->meter;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "send(cycle, message) takes two positional arguments");
        return NULL;
    }
    PyObject *cycle = args[0], *message = args[1];
    PyObject *kind = lookup(message, s_type);
    if (kind == NULL && PyErr_Occurred()) {
        return NULL;
    }
    /* Anything unexpected is left to uvicorn's send, which raises the error the app expects. */
    int failed = 0;
    if (is_string(kind, s_body_type)) {
        failed = body_sent(m, cycle, message) < 0;
    }
    else if (is_string(kind, s_start)) {
        failed = start_sent(cycle, message) < 0;
    }
    Py_XDECREF(kind);
    return failed ? NULL : PyObject_Vectorcall(m->base_send, args, 2, NULL);
}

/* Hook: a callable that binds like a function, so it can stand as a method of a class. */

static PyObject *
hook_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL) { /* looked up on the class */
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
make_hook(Meter *m, vectorcallfunc call)
{
    Hook *hook = PyObject_GC_New(Hook, &HookType);
    if (hook == NULL) {
        return NULL;
    }
    hook->vectorcall = call;
    Py_INCREF(m);
    hook->meter = m;
    PyObject_GC_Track(hook);
    return (PyObject *)hook;
}

static int
hook_traverse(Hook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->meter);
    return 0;
}

static int
hook_clear(Hook *self)
{
    Py_CLEAR(self->meter);
    return 0;
}

static void
hook_dealloc(Hook *self)
{
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    PyObject_GC_Del(self);
}

static PyTypeObject HookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asgiscale.runtime._meter.Hook",
    .tp_doc = "One of a Meter's request-cycle methods.",
    .tp_basicsize = sizeof(Hook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(Hook, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = hook_get,
    .tp_traverse = (traverseproc)hook_traverse,
    .tp_clear = (inquiry)hook_clear,
    .tp_dealloc = (destructor)hook_dealloc,
};

/* Meter */

static int
meter_init(Meter *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"base_run", "base_send", "open", "words", "place", "bounds", "waiting", "admit_next", NULL};
    PyObject *base_run, *base_send, *open, *words, *place, *bounds, *waiting, *admit_next;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!OOOOO", names, &base_run, &base_send, &PyDict_Type, &open,
                                     &words, &place, &bounds, &waiting, &admit_next)) {
        return -1;
    }
    if (self->words != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Meter is set up once");
        return -1;
    }
    PyObject *sequence = PySequence_Fast(bounds, "bounds must be a sequence of integers");
    if (sequence == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    if (n > MAX_BOUNDS) {
        Py_DECREF(sequence);
        PyErr_Format(PyExc_ValueError, "at most %d bucket bounds", MAX_BOUNDS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        self->bounds[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(sequence, i));
        if (self->bounds[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(sequence);
            return -1;
        }
    }
    Py_DECREF(sequence);
    self->nbounds = n;
    if (PyObject_GetBuffer(words, &self->view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    if (self->view.itemsize != 8 || self->view.format == NULL || strcmp(self->view.format, "q") != 0) {
        PyBuffer_Release(&self->view);
        PyErr_SetString(PyExc_TypeError, "words must be a writable buffer of signed 64-bit integers");
        return -1;
    }
    self->words = self->view.buf;
    self->nwords = self->view.len / 8;
    Py_XSETREF(self->open, Py_NewRef(open));
    Py_XSETREF(self->base_run, Py_NewRef(base_run));
    Py_XSETREF(self->base_send, Py_NewRef(base_send));
    Py_XSETREF(self->place, Py_NewRef(place));
    Py_XSETREF(self->waiting, Py_NewRef(waiting));
    Py_XSETREF(self->admit_next, Py_NewRef(admit_next));
    self->busy_ns = self->busy_since = self->response_bytes = 0;
    return 0;
}

static PyObject *
meter_get_run_asgi(Meter *self, void *closure)
{
    return make_hook(self, hook_run_asgi); /* a new hook each time: the meter holds none */
}

static PyObject *
meter_get_send(Meter *self, void *closure)
{
    return make_hook(self, hook_send);
}

static PyObject *
meter_begin(Meter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "begin(cycle, started, since) takes three arguments");
        return NULL;
    }
    long long started = PyLong_AsLongLong(args[1]);
    long long since = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred() || open_request(self, args[0], started, since) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
meter_finish(Meter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "finish(cycle, status, started) takes three arguments");
        return NULL;
    }
    long long started = PyLong_AsLongLong(args[2]);
    if ((started == -1 && PyErr_Occurred()) || record(self, args[0], args[1], started) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
meter_count(Meter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "count(method, status, duration_ns) takes three arguments");
        return NULL;
    }
    long long duration = PyLong_AsLongLong(args[2]);
    if ((duration == -1 && PyErr_Occurred()) || count(self, args[0], args[1], duration) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
meter_busy(Meter *self, PyObject *Py_UNUSED(ignored))
{
    long long busy = self->busy_ns;
    if (PyDict_GET_SIZE(self->open) > 0) {
        busy += now_ns() - self->busy_since;
    }
    return PyLong_FromLongLong(busy);
}

static int
meter_traverse(Meter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->base_run);
    Py_VISIT(self->base_send);
    Py_VISIT(self->open);
    Py_VISIT(self->place);
    Py_VISIT(self->waiting);
    Py_VISIT(self->admit_next);
    return 0;
}

static int
meter_clear(Meter *self)
{
    Py_CLEAR(self->base_run);
    Py_CLEAR(self->base_send);
    Py_CLEAR(self->open);
    Py_CLEAR(self->place);
    Py_CLEAR(self->waiting);
    Py_CLEAR(self->admit_next);
    return 0;
}

static void
meter_dealloc(Meter *self)
{
    PyObject_GC_UnTrack(self);
    meter_clear(self);
    for (Py_ssize_t i = 0; i < self->nplaces; i++) {
        Py_DECREF(self->places[i].method);
    }
    if (self->words != NULL) {
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef meter_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))meter_begin, METH_FASTCALL,
     "begin(cycle, started, since): note a request as open from `since` (ns), busy from `started`."},
    {"finish", (PyCFunction)(void (*)(void))meter_finish, METH_FASTCALL,
     "finish(cycle, status, started): count a request, no longer open, that ends now."},
    {"count", (PyCFunction)(void (*)(void))meter_count, METH_FASTCALL,
     "count(method, status, duration_ns): count a request that was never open (refused at once)."},
    {"busy_ns", (PyCFunction)meter_busy, METH_NOARGS, "Time with at least one request open, up to now (ns)."},
    {NULL},
};

static PyMemberDef meter_members[] = {
    {"open", T_OBJECT, offsetof(Meter, open), READONLY, "cycle -> start (ns) of the requests not recorded yet"},
    {"response_bytes", T_LONGLONG, offsetof(Meter, response_bytes), 0, "response body bytes sent"},
    {NULL},
};

static PyGetSetDef meter_getset[] = {
    {"run_asgi", (getter)meter_get_run_asgi, NULL, "the cycle's run_asgi, measured", NULL},
    {"send", (getter)meter_get_send, NULL, "the cycle's send, measured", NULL},
    {NULL},
};

static PyTypeObject MeterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asgiscale.runtime._meter.Meter",
    .tp_doc = "Meter(base_run, base_send, open, words, place, bounds, waiting, admit_next): one worker's request accounting.",
    .tp_basicsize = sizeof(Meter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)meter_init,
    .tp_traverse = (traverseproc)meter_traverse,
    .tp_clear = (inquiry)meter_clear,
    .tp_dealloc = (destructor)meter_dealloc,
    .tp_methods = meter_methods,
    .tp_members = meter_members,
    .tp_getset = meter_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "asgiscale.runtime._meter",
    .m_doc = "The per-request step of asgiscale's instrumentation, compiled.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__meter(void)
{
    if (PyType_Ready(&MeterType) < 0 || PyType_Ready(&HookType) < 0) {
        return NULL;
    }
#define INTERN(var, text)                                \
    if ((var = PyUnicode_InternFromString(text)) == NULL) { \
        return NULL;                                     \
    }
    INTERN(s_type, "type");
    INTERN(s_status, "status");
    INTERN(s_body, "body");
    INTERN(s_more_body, "more_body");
    INTERN(s_scope, "scope");
    INTERN(s_method, "method");
    INTERN(s_start, "http.response.start");
    INTERN(s_body_type, "http.response.body");
#undef INTERN
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&MeterType);
    if (PyModule_AddObject(m, "Meter", (PyObject *)&MeterType) < 0) {
        Py_DECREF(&MeterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
