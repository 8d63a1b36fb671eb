/** DockerIgnore decides which paths of a build context are left out. */
export declare class DockerIgnore {
    private readonly patterns;
    constructor(text: string);
    /** ignored reports whether the slash-separated path rel is left out. */
    ignored(rel: string): boolean;
    /**
     * mayReinclude reports whether a "!" pattern could let back in something
     * below the directory rel, so that a walk must still enter it.
     */
    mayReinclude(rel: string): boolean;
}
